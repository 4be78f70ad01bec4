// Issue 2's slice: go live in a real browser, stop, leave, come back in a new context,
// find the recording in the feed, play it, and check every byte made it.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Server,
  assertPlaysAndSeeks,
  captureAcknowledgedPatches,
  probeDuration,
  serverAndBrowser,
  sha256,
  signUp,
  uniqueName,
  videoFrameMd5s,
} from "./harness.mjs";

const env = serverAndBrowser();

test("a live recorded in the browser is in the feed after the tab is gone, plays, and is byte-exact", async () => {
  const broadcaster = await env.browser.newContext({ locale: "fr-FR", timezoneId: "Europe/Paris" });
  const page = await broadcaster.newPage();
  const network = captureAcknowledgedPatches(page);
  await page.goto(env.server.url);
  await signUp(page, uniqueName());

  await page.getByLabel("Titre du live").fill("Mon premier live");
  await page.getByRole("button", { name: "Passer en direct" }).click();
  await page.getByTestId("clock").waitFor();
  // About three seconds of video, measured by the page's own clock.
  await page.waitForFunction(() => document.querySelector('[data-testid="clock"]')?.textContent >= "00:03", null, {
    timeout: 15_000,
  });
  await page.getByRole("button", { name: "Arrêter" }).click();
  const saved = page.getByTestId("saved");
  await saved.waitFor({ timeout: 30_000 });
  const recorderSha = await saved.getAttribute("data-sha256");
  const liveId = Number(await saved.getAttribute("data-live-id"));
  const sentBytes = network.bytes();
  await broadcaster.close();

  // Bytes: what crossed the network is what the recorder hashed is what the server holds.
  assert.match(recorderSha, /^[0-9a-f]{64}$/);
  assert.ok(sentBytes.length > 10_000, `only ${sentBytes.length} bytes were uploaded`);
  assert.equal(sha256(sentBytes), recorderSha, "the recorder's SHA-256 differs from the bytes it sent");
  const { status, body: post } = await env.server.api("GET", `/api/posts/${liveId}/`);
  assert.equal(status, 200);
  assert.equal(post.live_status, "ended");
  assert.equal(post.content, "Mon premier live");
  assert.equal(post.media_files.length, 1);
  const media = post.media_files[0];
  assert.equal(media.original_sha256, recorderSha);
  assert.equal(media.is_live_recording, true);
  assert.equal(media.live_post, liveId);
  assert.match(media.title, /Mon premier live$/);
  assert.match(media.mime_type, /^video\/(webm|mp4)/);
  assert.ok(media.duration > 2 && media.duration < 8, `duration ${media.duration}`);

  // The poster the recorder grabbed a second in is a JPEG the feed shows before playing.
  assert.match(media.poster_url ?? "", /^\/media\/\d+\/poster$/);
  const poster = await fetch(env.server.url + media.poster_url);
  assert.equal(poster.status, 200);
  assert.equal(poster.headers.get("content-type"), "image/jpeg");
  assert.deepEqual([...Buffer.from(await poster.arrayBuffer()).subarray(0, 3)], [0xff, 0xd8, 0xff]);

  // The stored file decodes to the same frames as the bytes the browser produced.
  const served = Buffer.from(await (await fetch(env.server.url + media.file_url)).arrayBuffer());
  assert.equal(served.length, media.size);
  const ext = media.mime_type.startsWith("video/mp4") ? "mp4" : "webm";
  const rawFrames = videoFrameMd5s(sentBytes, `raw.${ext}`);
  assert.ok(rawFrames.length >= 20, `only ${rawFrames.length} frames decoded from the upload`);
  assert.deepEqual(videoFrameMd5s(served, `served.${ext}`), rawFrames);
  const probed = probeDuration(served, `served.${ext}`);
  assert.ok(Math.abs(probed - media.duration) < 0.05, `ffprobe says ${probed} s, the Media ${media.duration} s`);

  // A new browser context: nothing of the broadcaster's tab is left.
  const viewer = await env.browser.newContext({ locale: "fr-FR", timezoneId: "Europe/Paris" });
  const feed = await viewer.newPage();
  await feed.goto(env.server.url);
  const card = feed.locator(`[data-testid="post"][data-post-id="${liveId}"]`);
  await card.waitFor();
  await assert.doesNotReject(card.getByText("Mon premier live").waitFor());
  assert.equal(await card.getByTestId("live-badge").textContent(), "LIVE");
  assert.match(await card.getByTestId("recorded-at").textContent(), /^Enregistré le \d{2}\/\d{2}\/\d{4} à \d{2}:\d{2}$/);
  assert.match(await card.getByTestId("duration").textContent(), /^00:0[2-7]$/);
  assert.match(await card.getByTestId("stats").textContent(), /0 spectateur.*0 message/);

  const video = card.locator("video");
  assert.equal(await video.getAttribute("controls"), "");
  assert.equal(await video.getAttribute("poster"), media.poster_url);
  await assertPlaysAndSeeks(feed, video, liveId, media);
  await viewer.close();
});

test("the page speaks English to a browser that prefers it", async () => {
  const context = await env.browser.newContext({ locale: "en-US" });
  const page = await context.newPage();
  await page.goto(env.server.url);
  await page.getByRole("heading", { name: "Sign up" }).waitFor();
  await page.getByRole("heading", { name: "Feed" }).waitFor();
  await context.close();
});

test("a person whose camera is refused is told so", async () => {
  const context = await env.browser.newContext({ locale: "fr-FR" });
  // The fake-UI flag grants the camera to every page; this page refuses it as a person would.
  await context.addInitScript(() => {
    navigator.mediaDevices.getUserMedia = () =>
      Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
  });
  const page = await context.newPage();
  await page.goto(env.server.url);
  await signUp(page, uniqueName("denied"));
  await page.getByRole("button", { name: "Passer en direct" }).click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.textContent(), /accès à la caméra a été refusé/);
  await context.close();
});

test("a person is told when the server cannot be reached", async () => {
  const lonely = new Server();
  await lonely.start();
  const context = await env.browser.newContext({ locale: "fr-FR" });
  const page = await context.newPage();
  await page.goto(lonely.url);
  await page.locator('input[name="username"]').waitFor();
  await lonely.stop();
  await page.locator('input[name="username"]').fill(uniqueName());
  await page.locator('input[name="password"]').fill("long enough password");
  await page.locator('form.auth button[type="submit"]').click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.textContent(), /serveur est injoignable/);
  await context.close();
  await lonely.dispose();
});
