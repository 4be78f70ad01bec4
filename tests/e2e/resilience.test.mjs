// Issue 3: nothing recorded is lost through offline spells, server crashes and closed tabs.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  Server,
  captureAcknowledgedPatches,
  eventually,
  goLive,
  launchBrowser,
  signUp,
  stopLive,
  uniqueName,
  videoFrameMd5s,
  waitForClock,
} from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => browser?.close());

/** The Media of a live, once it has one. */
async function mediaOf(server, liveId) {
  const { status, body } = await server.api("GET", `/api/posts/${liveId}/`);
  assert.equal(status, 200);
  return { post: body, media: body.media_files[0] };
}

/**
 * Checks that the server's Media holds what crossed the network: a prefix of what was sent, in
 * whole PATCHes (an answer lost to a cut or a crash may hide a committed PATCH from the test),
 * reaching at least the last acknowledged byte; with `recorderSha` (the page stopped the live),
 * exactly every byte the recorder produced. The served file must decode to the same frames.
 */
async function assertStoredExactly(server, liveId, network, recorderSha) {
  const { post, media } = await mediaOf(server, liveId);
  assert.ok(media, `live ${liveId} has no media: ${JSON.stringify(post)}`);
  const stored = network.sentPrefixWithSha(media.original_sha256);
  assert.ok(stored, "the server holds bytes that are not a prefix of what was sent");
  assert.ok(stored.length >= network.acknowledgedEnd(), `acknowledged bytes were lost: ${stored.length} stored`);
  if (recorderSha) assert.equal(media.original_sha256, recorderSha, "the recorder produced other bytes than were stored");
  const served = Buffer.from(await (await fetch(server.url + media.file_url)).arrayBuffer());
  assert.deepEqual(videoFrameMd5s(served, "served.webm"), videoFrameMd5s(stored, "raw.webm"));
  return { post, media };
}

/** A fresh server and a signed-in broadcaster whose acknowledged uploads are captured, live on `title`. */
async function broadcast(title, serverOptions) {
  const server = new Server(serverOptions);
  await server.start();
  const context = await browser.newContext({ locale: "fr-FR" });
  const network = captureAcknowledgedPatches(context);
  const page = await context.newPage();
  await page.goto(server.url);
  await signUp(page, uniqueName("resilience"));
  await goLive(page, title);
  return { server, context, network, page };
}

test("a 4 s network cut in the middle of a 10 s live loses nothing", async () => {
  const { server, context, network, page } = await broadcast("Coupure réseau");
  await waitForClock(page, "00:03");
  await context.setOffline(true);
  await waitForClock(page, "00:07");
  await context.setOffline(false);
  await waitForClock(page, "00:10");
  const { sha256: recorderSha, liveId } = await stopLive(page);
  const { media } = await assertStoredExactly(server, liveId, network, recorderSha);
  assert.ok(media.duration > 8.5 && media.duration < 13, `duration ${media.duration}`);
  await context.close();
  await server.dispose();
});

test("the server killed with SIGKILL and restarted during a live loses nothing", async () => {
  const { server, context, network, page } = await broadcast("Crash serveur");
  await waitForClock(page, "00:02");
  await server.kill();
  await new Promise((r) => setTimeout(r, 1500));
  await server.start(server.listen);
  await waitForClock(page, "00:05");
  const { sha256: recorderSha, liveId } = await stopLive(page);
  await assertStoredExactly(server, liveId, network, recorderSha);
  await context.close();
  await server.dispose();
});

test("a page closed without a stop becomes an interrupted recording in the feed", async () => {
  const { server, context, network, page } = await broadcast("Onglet fermé", { args: ["--interrupt-after", "4"] });
  await waitForClock(page, "00:05");
  const liveId = await eventually(
    async () => (await server.api("GET", "/api/posts/?limit=1")).body.results.find((p) => p.live_status === "live")?.id,
    { what: "the live in the feed" },
  );
  await page.close({ runBeforeUnload: false });
  await context.close();

  const post = await eventually(
    async () => {
      const { body } = await server.api("GET", `/api/posts/${liveId}/`);
      return body.live_status === "interrupted" && body.media_files.length === 1 ? body : undefined;
    },
    { timeout: 30_000, what: "the automatic finalization" },
  );
  const media = post.media_files[0];
  assert.ok(media.duration > 3 && media.duration < 8, `duration ${media.duration} should come from the file`);
  await assertStoredExactly(server, liveId, network);

  // And it plays in the feed.
  const viewer = await browser.newContext({ locale: "fr-FR" });
  const feed = await viewer.newPage();
  await feed.goto(server.url);
  const card = feed.locator(`[data-post-id="${liveId}"]`);
  await card.getByText("interrompu").waitFor();
  await card.locator("video").evaluate((v) => {
    v.muted = true;
    return v.play();
  });
  await feed.waitForFunction((id) => document.querySelector(`[data-post-id="${id}"] video`)?.currentTime > 0.5, liveId);
  await viewer.close();
  await server.dispose();
});

test("a tab closed while offline resumes from its local journal when the page is opened again", async () => {
  const { server, context, network, page } = await broadcast("Journal local");
  await waitForClock(page, "00:01");
  await context.setOffline(true);
  await waitForClock(page, "00:04");
  const liveId = await eventually(
    async () => (await server.api("GET", "/api/posts/?limit=1")).body.results.find((p) => p.live_status === "live")?.id,
    { what: "the live in the feed" },
  );
  await page.close({ runBeforeUnload: false });
  await context.setOffline(false);

  // The same browser profile comes back online: the page finds the journal and finishes the live.
  const again = await context.newPage();
  await again.goto(server.url);
  await again.getByTestId("recovered").waitFor({ timeout: 60_000 });
  const { post, media } = await assertStoredExactly(server, liveId, network);
  assert.equal(post.live_status, "ended");
  // Offline from the first second on: whatever lasts beyond it came from the journal. The last
  // partial timeslice is lost with the page (no final dataavailable on close).
  assert.ok(media.duration >= 2.5, `the recovered recording lasts ${media.duration} s`);
  await context.close();
  await server.dispose();
});
