// Issue 5: viewers watch a live while it records, chat, are counted, and replay it with its chat.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { eventually, goLive, root, serverAndBrowser, signUp, stopLive, uniqueName, waitForClock } from "./harness.mjs";

before(() => mkdirSync(join(root, "tests", "artifacts"), { recursive: true }));
const env = serverAndBrowser();

/**
 * A signed-in person on their own browser context; with `onlyMp4`, a browser that can record
 * MP4 only, as Safari (Chromium records fragmented MP4 when asked for `video/mp4`).
 */
async function person(prefix, { onlyMp4 = false } = {}) {
  const context = await env.browser.newContext({ locale: "fr-FR" });
  if (onlyMp4) {
    await context.addInitScript(() => {
      const supported = MediaRecorder.isTypeSupported.bind(MediaRecorder);
      MediaRecorder.isTypeSupported = (type) => type.startsWith("video/mp4") && supported(type);
    });
  }
  const page = await context.newPage();
  await page.goto(env.server.url);
  await signUp(page, uniqueName(prefix));
  return { context, page };
}

async function videoTime(page, testId) {
  return page.getByTestId(testId).evaluate((v) => v.currentTime);
}

test("two viewers watch a live, chat, are counted, and the replay shows the chat in time", async () => {
  const broadcaster = await person("host");
  await goLive(broadcaster.page, "Live avec chat");
  await waitForClock(broadcaster.page, "00:02");
  const liveId = await eventually(
    async () =>
      (await env.server.api("GET", "/api/posts/?limit=5")).body.results.find(
        (p) => p.live_status === "live" && p.content === "Live avec chat",
      )?.id,
    { what: "the live in the feed" },
  );

  // Viewers open it from the feed's LIVE card.
  const viewers = [await person("alice"), await person("bob")];
  for (const { page } of viewers) {
    await page.locator(`[data-post-id="${liveId}"] h3 a`).click();
    await page.getByTestId("live-video").waitFor();
  }
  // Their video advances while the live runs.
  for (const { page } of viewers) {
    await page.waitForFunction(() => document.querySelector('[data-testid="live-video"]')?.currentTime > 1, null, {
      timeout: 30_000,
    });
    const t0 = await videoTime(page, "live-video");
    await page.waitForFunction(
      (before) => document.querySelector('[data-testid="live-video"]')?.currentTime > before + 1,
      t0,
      { timeout: 30_000 },
    );
  }
  await broadcaster.page.getByTestId("broadcaster-viewers").getByText("2 spectateurs").waitFor({ timeout: 15_000 });

  // Chat: each message reaches the other viewer.
  const [alice, bob] = viewers;
  await alice.page.getByLabel("Votre message").fill("Bonjour tout le monde");
  await alice.page.getByRole("button", { name: "Envoyer" }).click();
  // Two seconds apart on the recording's timeline.
  const sentAt = await broadcaster.page.getByTestId("clock").textContent();
  const [m, sec] = sentAt.split(":").map(Number);
  const later = m * 60 + sec + 2;
  await waitForClock(broadcaster.page, `${String(Math.floor(later / 60)).padStart(2, "0")}:${String(later % 60).padStart(2, "0")}`);
  await bob.page.getByLabel("Votre message").fill("Salut Alice");
  await bob.page.getByRole("button", { name: "Envoyer" }).click();
  await bob.page.getByTestId("chat-messages").getByText("Bonjour tout le monde").waitFor();
  await alice.page.getByTestId("chat-messages").getByText("Salut Alice").waitFor();
  await broadcaster.page.getByTestId("chat-messages").getByText("Salut Alice").waitFor();
  await alice.page.screenshot({ path: join(root, "tests", "artifacts", "live-room.png") });

  await new Promise((r) => setTimeout(r, 1500));
  const { liveId: stopped } = await stopLive(broadcaster.page);
  assert.equal(stopped, liveId);
  for (const { page } of viewers) await page.getByTestId("live-ended").waitFor({ timeout: 15_000 });

  const { body: post } = await env.server.api("GET", `/api/posts/${liveId}/`);
  assert.equal(post.viewer_count, 2);
  assert.equal(post.peak_viewers, 2);
  assert.equal(post.chat_message_count, 2);
  const { body: chat } = await env.server.api("GET", `/api/posts/${liveId}/chat/`);
  assert.deepEqual(
    chat.results.map((m) => m.body),
    ["Bonjour tout le monde", "Salut Alice"],
  );
  const [first, second] = chat.results.map((m) => m.offset);
  assert.ok(first > 1 && second > first + 1, `offsets ${first}, ${second}`);
  assert.ok(second < post.media_files[0].duration, "the second message lies within the recording");

  // The feed card carries the counts.
  const visitor = await env.browser.newContext({ locale: "fr-FR" });
  const feed = await visitor.newPage();
  await feed.goto(env.server.url);
  const stats = feed.locator(`[data-post-id="${liveId}"]`).getByTestId("stats");
  await stats.getByText("2 spectateurs").waitFor();
  assert.match(await stats.textContent(), /2 messages/);

  // Replay: messages appear as the video passes their offset; clicking one seeks there.
  await feed.locator(`[data-post-id="${liveId}"] h3 a`).click();
  const video = feed.getByTestId("replay-video");
  await video.waitFor();
  assert.equal(await feed.getByTestId("author").textContent(), `@${post.author.username}`);
  await feed.waitForFunction(() => document.querySelector('[data-testid="replay-video"]')?.readyState >= 1);
  const shown = () => feed.getByTestId("chat-message").count();
  assert.equal(await shown(), 0, "no message is shown before the video reaches it");
  await video.evaluate((v, t) => (v.currentTime = t), first + 0.2);
  await eventually(async () => (await shown()) === 1, { what: "the first message after seeking past it" });
  await video.evaluate((v, t) => (v.currentTime = t), second + 0.2);
  await eventually(async () => (await shown()) === 2, { what: "both messages" });
  await video.evaluate((v) => (v.currentTime = 0));
  await eventually(async () => (await shown()) === 0, { what: "seeking back hides the messages again" });
  await video.evaluate((v, t) => (v.currentTime = t), second + 0.5);
  await eventually(async () => (await shown()) === 2, { what: "both messages again" });
  await feed.getByTestId("chat-message").first().getByRole("button").click();
  const landed = await video.evaluate((v) => v.currentTime);
  assert.ok(Math.abs(landed - first) < 0.3, `clicking the first message seeks to ${first}, landed at ${landed}`);

  for (const c of [broadcaster.context, alice.context, bob.context, visitor]) await c.close();
});

test("an MP4 live is watched while it records, keeps its chat, and replays with the chat in time", async () => {
  const broadcaster = await person("mp4host", { onlyMp4: true });
  await goLive(broadcaster.page, "Live en MP4");
  await waitForClock(broadcaster.page, "00:02");
  const liveId = await eventually(
    async () =>
      (await env.server.api("GET", "/api/posts/?limit=5")).body.results.find(
        (p) => p.live_status === "live" && p.content === "Live en MP4",
      )?.id,
    { what: "the MP4 live in the feed" },
  );

  // A second browser watches it: the stream is MP4 and its video advances while it records.
  const viewer = await person("mp4viewer");
  await viewer.page.locator(`[data-post-id="${liveId}"] h3 a`).click();
  await viewer.page.getByTestId("live-video").waitFor();
  const stream = await fetch(`${env.server.url}/api/posts/live/${liveId}/stream`);
  assert.equal(stream.status, 200);
  assert.equal(stream.headers.get("content-type"), "video/mp4");
  await stream.body.cancel();
  await viewer.page.waitForFunction(() => document.querySelector('[data-testid="live-video"]')?.currentTime > 1, null, {
    timeout: 30_000,
  });
  const t0 = await videoTime(viewer.page, "live-video");
  await viewer.page.waitForFunction(
    (before) => document.querySelector('[data-testid="live-video"]')?.currentTime > before + 1,
    t0,
    { timeout: 30_000 },
  );
  assert.equal(await viewer.page.getByTestId("not-streamable").count(), 0);

  // Viewers and chat work as for any live.
  await broadcaster.page.getByTestId("broadcaster-viewers").getByText("1 spectateur").waitFor({ timeout: 15_000 });
  await viewer.page.getByLabel("Votre message").fill("Bonjour en MP4");
  await viewer.page.getByRole("button", { name: "Envoyer" }).click();
  await broadcaster.page.getByTestId("chat-messages").getByText("Bonjour en MP4").waitFor();

  // Someone signed out is told how to join the chat; a live that does not exist says so.
  const visitor = await env.browser.newContext({ locale: "fr-FR" });
  const anonymous = await visitor.newPage();
  await anonymous.goto(`${env.server.url}/#/live/${liveId}`);
  await anonymous.getByRole("link", { name: "Connectez-vous pour écrire dans le chat." }).waitFor();
  await anonymous.goto(`${env.server.url}/#/live/987654321`);
  await anonymous.reload();
  await anonymous.getByText("Ce live n'existe pas.").waitFor({ timeout: 15_000 });
  await visitor.close();

  await new Promise((r) => setTimeout(r, 2000));
  await stopLive(broadcaster.page);
  await viewer.page.getByTestId("live-ended").waitFor({ timeout: 15_000 });
  const { body: post } = await env.server.api("GET", `/api/posts/${liveId}/`);
  const media = post.media_files[0];
  assert.match(media.mime_type, /^video\/mp4/);
  // The poster the recorder grabbed is the Media's, as for WebM.
  assert.match(media.poster_url ?? "", /^\/media\/\d+\/poster$/);
  const poster = await fetch(env.server.url + media.poster_url);
  assert.equal(poster.headers.get("content-type"), "image/jpeg");
  assert.deepEqual([...Buffer.from(await poster.arrayBuffer()).subarray(0, 3)], [0xff, 0xd8, 0xff]);
  const { body: chat } = await env.server.api("GET", `/api/posts/${liveId}/chat/`);
  const [offset] = chat.results.map((m) => m.offset);
  assert.ok(offset > 1 && offset < media.duration, `offset ${offset} in ${media.duration} s`);

  // The end turns the page into the replay: the finalized MP4 knows its duration at once, and
  // the message appears as the video passes its offset.
  await viewer.page.waitForURL(`**/#/post/${liveId}`, { timeout: 15_000 });
  const replay = viewer.page.getByTestId("replay-video");
  await viewer.page.waitForFunction(() => document.querySelector('[data-testid="replay-video"]')?.readyState >= 1);
  const duration = await replay.evaluate((v) => v.duration);
  assert.ok(Math.abs(duration - media.duration) < 0.5, `player ${duration} s, media ${media.duration} s`);
  const shown = () => viewer.page.getByTestId("chat-message").count();
  await replay.evaluate((v) => (v.currentTime = 0));
  await eventually(async () => (await shown()) === 0, { what: "no message before its offset" });
  await replay.evaluate((v, t) => (v.currentTime = t), offset + 0.3);
  await eventually(async () => (await shown()) === 1, { what: "the message after seeking past it" });
  for (const c of [broadcaster.context, viewer.context]) await c.close();
});
