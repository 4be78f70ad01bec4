// Issue 5: viewers watch a live while it records, chat, are counted, and replay it with its chat.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { eventually, goLive, root, serverAndBrowser, signUp, stopLive, uniqueName, waitForClock } from "./harness.mjs";

before(() => mkdirSync(join(root, "tests", "artifacts"), { recursive: true }));
const env = serverAndBrowser();

/** A signed-in person on their own browser context. */
async function person(prefix) {
  const context = await env.browser.newContext({ locale: "fr-FR" });
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
