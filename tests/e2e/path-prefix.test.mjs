// Behind the host's proxy, under a path: `livekeep serve --public-url http://…/livekeep` serves
// the whole app under /livekeep/ as a proxy that keeps the prefix would forward it. The real
// page, loaded at /livekeep/, signs up, records a short live and plays it back, and every
// request it makes stays under the prefix.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import {
  Server,
  freePort,
  goLive,
  launchBrowser,
  signUp,
  stopLive,
  uniqueName,
  waitForClock,
} from "./harness.mjs";

const port = await freePort();
const publicUrl = `http://127.0.0.1:${port}/livekeep`;
const server = new Server({ args: ["--public-url", publicUrl] });
await server.start(`127.0.0.1:${port}`);
const browser = await launchBrowser();
after(async () => {
  await browser.close();
  await server.dispose();
});

test("the page under /livekeep/ records a live that plays from /livekeep/media/", async () => {
  const context = await browser.newContext({ locale: "en-US" });
  const page = await context.newPage();
  const paths = [];
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.origin === new URL(publicUrl).origin) paths.push(url.pathname);
  });
  await page.goto(`${publicUrl}/`);
  await signUp(page, uniqueName("prefix"));
  await goLive(page, "Under a prefix");
  await waitForClock(page, "00:03");
  const { liveId } = await stopLive(page);

  const { status, body: post } = await server.api("GET", `/livekeep/api/posts/${liveId}/`);
  assert.equal(status, 200);
  assert.equal(post.live_status, "ended");
  const media = post.media_files[0];
  assert.ok(media.file_url.startsWith(`${publicUrl}/media/`), media.file_url);

  // The feed, reloaded under the prefix: the recording plays from its absolute URL.
  await page.goto(`${publicUrl}/`);
  const video = page.locator(`[data-post-id="${liveId}"] video`);
  await video.waitFor();
  assert.equal(await video.getAttribute("src"), media.file_url);
  await video.evaluate((v) => {
    v.muted = true;
    return v.play();
  });
  await page.waitForFunction((id) => document.querySelector(`[data-post-id="${id}"] video`)?.currentTime > 0.5, liveId, {
    timeout: 15_000,
  });

  const outside = paths.filter((path) => path !== "/livekeep" && !path.startsWith("/livekeep/"));
  assert.deepEqual(outside, [], "every request of the page stays under the prefix");
  assert.ok(paths.some((path) => path.startsWith("/livekeep/api/uploads/")), "the upload went under the prefix");
  await context.close();
});
