// Issue 7 in a real browser: two `livekeep serve` nodes sharing one PostgreSQL database and one
// S3 store behind a round-robin load balancer with no stickiness. A live's PATCHes alternate
// between the nodes, a viewer's SSE and the chat cross them, and killing a node mid-live loses
// nothing acknowledged. Needs the scale-out services: scripts/test.sh runs it after
// `services_start`, by hand `scripts/services.sh bash -c 'cd tests && LIVEKEEP_TEST_DATABASE=postgres
// LIVEKEEP_TEST_STORAGE=s3 node --test e2e/two-nodes.test.mjs'`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  RoundRobinProxy,
  Server,
  assertPlaysAndSeeks,
  captureAcknowledgedPatches,
  eventually,
  goLive,
  launchBrowser,
  probeDuration,
  scaleOutEnvironment,
  sha256,
  signUp,
  stopLive,
  uniqueName,
  videoFrameMd5s,
  waitForClock,
} from "./harness.mjs";

if (process.env.LIVEKEEP_TEST_DATABASE !== "postgres" || process.env.LIVEKEEP_TEST_STORAGE !== "s3") {
  // Two nodes cannot share SQLite or a local disk: this test is the scale-out configuration's.
  throw new Error(
    "two-nodes.test.mjs needs LIVEKEEP_TEST_DATABASE=postgres and LIVEKEEP_TEST_STORAGE=s3 with the " +
      "services of scripts/services.sh (scripts/test.sh runs it in its scale-out step)",
  );
}

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => browser?.close());

/** Two nodes on one fresh database and one fresh prefix, and a round-robin proxy before them. */
async function cluster() {
  const scaleOut = scaleOutEnvironment();
  const nodes = [new Server({ scaleOut }), new Server({ scaleOut })];
  for (const node of nodes) await node.start();
  const proxy = new RoundRobinProxy(nodes.map((n) => n.url));
  await proxy.start();
  return {
    nodes,
    proxy,
    async dispose() {
      await proxy.close();
      for (const node of nodes) await node.dispose();
      scaleOut.dispose();
    },
  };
}

/** The live clock of a broadcaster's page, in seconds. */
async function clockSeconds(page) {
  const [m, s] = (await page.getByTestId("clock").textContent()).split(":").map(Number);
  return m * 60 + s;
}

function mmss(seconds) {
  return `${String(Math.floor(seconds / 60)).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;
}

/** JSON GET through the load balancer. */
async function getJson(proxy, path) {
  const response = await fetch(proxy.url + path);
  assert.equal(response.status, 200, `GET ${path}`);
  return response.json();
}

/** The tus upload ids a page PATCHes, in the order first seen. */
function uploadIds(page) {
  const ids = [];
  page.on("request", (request) => {
    const match = new URL(request.url()).pathname.match(/^\/api\/uploads\/([^/]+)$/);
    if (request.method() === "PATCH" && match && !ids.includes(match[1])) ids.push(match[1]);
  });
  return ids;
}

/** How many PATCHes of `upload` a node stored, from its own log ("chunk stored"). */
function chunksStored(node, upload) {
  return node.logs
    .join("")
    .split("\n")
    .filter((line) => line.includes("chunk stored") && line.includes(upload)).length;
}

/** Requests a node counted in /metrics for tus PATCHes answered 204. */
async function patches204(node) {
  const text = await (await fetch(node.url + "/metrics")).text();
  return text
    .split("\n")
    .filter((line) => line.includes('method="PATCH"') && line.includes('status="204"'))
    .reduce((sum, line) => sum + Number(line.trim().split(/\s+/).at(-1)), 0);
}

/** A signed-in person on their own browser context, on the load balancer's address. */
async function person(proxy, prefix) {
  const context = await browser.newContext({ locale: "fr-FR" });
  const network = captureAcknowledgedPatches(context);
  const page = await context.newPage();
  await page.goto(proxy.url);
  await signUp(page, uniqueName(prefix));
  return { context, page, network };
}

/**
 * What the store holds for a live is what crossed the network: a prefix of the PATCHes sent,
 * reaching at least the last acknowledged byte, and, as the page stopped it, every byte the
 * recorder produced; the served file decodes to the same frames, whichever node serves it.
 */
async function assertStoredExactly(cluster, liveId, network, recorderSha) {
  const post = await getJson(cluster.proxy, `/api/posts/${liveId}/`);
  assert.equal(post.live_status, "ended");
  assert.equal(post.media_files.length, 1, JSON.stringify(post));
  const media = post.media_files[0];
  assert.equal(media.original_sha256, recorderSha, "the recorder produced other bytes than were stored");
  const stored = network.sentPrefixWithSha(media.original_sha256);
  assert.ok(stored, "the server holds bytes that are not a prefix of what was sent");
  assert.ok(stored.length >= network.acknowledgedEnd(), `acknowledged bytes were lost: ${stored.length} stored`);
  assert.equal(sha256(stored), recorderSha);

  const served = [];
  for (const node of cluster.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null)) {
    const response = await fetch(node.url + media.file_url);
    assert.equal(response.status, 200);
    served.push(Buffer.from(await response.arrayBuffer()));
  }
  for (const bytes of served) assert.ok(bytes.equals(served[0]), "the nodes serve different files");
  assert.equal(served[0].length, media.size);
  const ext = media.mime_type.startsWith("video/mp4") ? "mp4" : "webm";
  const rawFrames = videoFrameMd5s(stored, `raw.${ext}`);
  assert.ok(rawFrames.length >= 20, `only ${rawFrames.length} frames decoded from the upload`);
  assert.deepEqual(videoFrameMd5s(served[0], `served.${ext}`), rawFrames);
  const probed = probeDuration(served[0], `served.${ext}`);
  assert.ok(Math.abs(probed - media.duration) < 0.05, `ffprobe says ${probed} s, the Media ${media.duration} s`);

  // Ranges through the load balancer, so from both nodes in turn, cut the same bytes.
  for (const [start, end] of [
    [0, 99],
    [1000, 4999],
    [served[0].length - 700, served[0].length - 1],
    [served[0].length >> 1, (served[0].length >> 1) + 12345],
  ]) {
    const response = await fetch(cluster.proxy.url + media.file_url, { headers: { range: `bytes=${start}-${end}` } });
    assert.equal(response.status, 206, `Range ${start}-${end}`);
    assert.equal(response.headers.get("content-range"), `bytes ${start}-${end}/${served[0].length}`);
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(served[0].subarray(start, end + 1)), `Range ${start}-${end}`);
  }
  return { post, media, served: served[0] };
}

test("a live through a round-robin load balancer: PATCHes on both nodes, viewer and chat across them, a seekable replay", async () => {
  const c = await cluster();
  try {
    const host = await person(c.proxy, "lbhost");
    const uploads = uploadIds(host.page);
    const metricsBefore = await Promise.all(c.nodes.map(patches204));
    await goLive(host.page, "Live réparti");
    await waitForClock(host.page, "00:02");
    const liveId = await eventually(
      async () =>
        (await getJson(c.proxy, "/api/posts/?limit=5")).results.find(
          (p) => p.live_status === "live" && p.content === "Live réparti",
        )?.id,
      { what: "the live in the feed" },
    );

    // A viewer opens it from the feed's LIVE card; its video advances while the live runs.
    const viewer = await person(c.proxy, "lbviewer");
    await viewer.page.locator(`[data-post-id="${liveId}"] h3 a`).click();
    await viewer.page.getByTestId("live-video").waitFor();
    await viewer.page.waitForFunction(() => document.querySelector('[data-testid="live-video"]')?.currentTime > 1, null, {
      timeout: 30_000,
    });
    // The viewer is counted by whichever node holds its stream; the broadcaster's page may
    // listen on the other one.
    await host.page.getByTestId("broadcaster-viewers").getByText("1 spectateur").waitFor({ timeout: 20_000 });

    // Chat from the broadcaster reaches the viewer, whose events come from either node.
    await host.page.getByLabel("Votre message").fill("Bonjour depuis le nœud d'à côté");
    await host.page.getByRole("button", { name: "Envoyer" }).click();
    await viewer.page.getByTestId("chat-messages").getByText("Bonjour depuis le nœud d'à côté").waitFor({ timeout: 15_000 });
    await viewer.page.getByLabel("Votre message").fill("Bien reçu");
    await viewer.page.getByRole("button", { name: "Envoyer" }).click();
    await host.page.getByTestId("chat-messages").getByText("Bien reçu").waitFor({ timeout: 15_000 });

    await waitForClock(host.page, "00:06");
    const { sha256: recorderSha, liveId: stopped } = await stopLive(host.page);
    assert.equal(stopped, liveId);
    await viewer.page.getByTestId("live-ended").waitFor({ timeout: 15_000 });

    // Both nodes stored PATCHes of this one upload, by their own logs and their own metrics.
    assert.equal(uploads.length, 1, `uploads ${uploads}`);
    const stored = c.nodes.map((n) => chunksStored(n, uploads[0]));
    assert.ok(
      stored.every((n) => n >= 1),
      `chunks stored per node: ${stored}; the proxy's requests: ${c.proxy.served.map((e) => `${e.method} ${e.path} ${e.target} ${e.status}`).join("\n")}`,
    );
    const metricsAfter = await Promise.all(c.nodes.map(patches204));
    assert.ok(
      metricsAfter.every((n, i) => n - metricsBefore[i] >= stored[i]),
      `PATCH 204 per node: ${metricsBefore} -> ${metricsAfter}`,
    );
    const byProxy = c.proxy.countBy({ method: "PATCH", pathPrefix: `/api/uploads/${uploads[0]}`, status: 204 });
    assert.deepEqual(
      [...byProxy.values()].map((n) => n > 0),
      [true, true],
    );

    const sentBytes = host.network.bytes();
    assert.equal(sha256(sentBytes), recorderSha, "the recorder's SHA-256 differs from the bytes it sent");
    const { post, media } = await assertStoredExactly(c, liveId, host.network, recorderSha);
    assert.equal(post.chat_message_count, 2);
    assert.equal(post.peak_viewers, 1);
    assert.ok(media.duration > 4.5 && media.duration < 10, `duration ${media.duration}`);
    const chat = await getJson(c.proxy, `/api/posts/${liveId}/chat/`);
    assert.deepEqual(
      chat.results.map((m) => m.body),
      ["Bonjour depuis le nœud d'à côté", "Bien reçu"],
    );

    // A new visitor finds it in the feed; the player knows its duration and seeks through the
    // load balancer, its Range requests landing on either node.
    const visitor = await browser.newContext({ locale: "fr-FR" });
    const feed = await visitor.newPage();
    await feed.goto(c.proxy.url);
    const card = feed.locator(`[data-testid="post"][data-post-id="${liveId}"]`);
    await card.getByRole("heading", { name: "Live réparti" }).waitFor();
    const video = card.locator("video");
    await assertPlaysAndSeeks(feed, video, liveId, media);

    for (const ctx of [host.context, viewer.context, visitor]) await ctx.close();
  } finally {
    await c.dispose();
  }
});

test("a node killed with SIGKILL mid-live: the survivor alone completes the recording with every acknowledged byte", async () => {
  const c = await cluster();
  try {
    const host = await person(c.proxy, "lbcrash");
    const uploads = uploadIds(host.page);
    await goLive(host.page, "Un nœud tombe");
    await waitForClock(host.page, "00:02");
    const [doomed, survivor] = c.nodes;
    const upload = await eventually(() => uploads[0], { what: "the first PATCH" });
    await eventually(() => chunksStored(doomed, upload) >= 1 && chunksStored(survivor, upload) >= 1, {
      what: "PATCHes stored on both nodes",
    });

    // A crash: whatever the dead node was writing, its answer never comes, and until the load
    // balancer's health check takes it out of the rotation every other request fails (502).
    const killedAt = await clockSeconds(host.page);
    await doomed.kill();
    await new Promise((r) => setTimeout(r, 2500));
    // Read once its last log lines are in (stderr may be drained after the exit).
    const storedByDoomed = chunksStored(doomed, upload);
    c.proxy.setTargets([survivor.url]);
    const survivorBefore = chunksStored(survivor, upload);

    await waitForClock(host.page, mmss(Math.max(killedAt + 6, 8)));
    const { sha256: recorderSha, liveId } = await stopLive(host.page);
    assert.ok(
      chunksStored(survivor, upload) >= survivorBefore + 3,
      `the survivor took the rest of the upload: ${c.proxy.served.map((e) => `${e.at} ${e.method} ${e.path} ${e.target} ${e.status}`).join("\n")}`,
    );
    assert.equal(chunksStored(doomed, upload), storedByDoomed);
    const { media } = await assertStoredExactly(c, liveId, host.network, recorderSha);
    assert.ok(media.duration > killedAt + 5 && media.duration < killedAt + 12, `duration ${media.duration}`);
    await host.context.close();
  } finally {
    await c.dispose();
  }
});
