// Issue 2's slice: go live in a real browser, stop, leave, come back in a new context,
// find the recording in the feed, play it, and check every byte made it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Server,
  assertPlaysAndSeeks,
  captureAcknowledgedPatches,
  eventually,
  probeDuration,
  root,
  serverAndBrowser,
  sha256,
  signUp,
  stopLive,
  uniqueName,
  videoFrameMd5s,
  waitForClock,
} from "./harness.mjs";

const env = serverAndBrowser();

/** `23/07/2025 à 15:30`: the day and time of `iso` in Paris, as a French card words them. */
function parisDay(iso) {
  const d = new Date(iso);
  const date = d.toLocaleDateString("fr-FR", { timeZone: "Europe/Paris", day: "2-digit", month: "2-digit", year: "numeric" });
  const time = d.toLocaleTimeString("fr-FR", { timeZone: "Europe/Paris", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  return `${date} à ${time}`;
}

test("a live recorded in the browser is in the feed after the tab is gone, plays, and is byte-exact", async () => {
  const broadcaster = await env.browser.newContext({ locale: "fr-FR", timezoneId: "Europe/Paris" });
  const page = await broadcaster.newPage();
  const network = captureAcknowledgedPatches(page);
  await page.goto(env.server.url);
  const username = uniqueName();
  await signUp(page, username);

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
  // The original design's card: the post's text as the heading, then the recording's title,
  // its author, date, duration, viewers and messages, each with its label.
  await card.getByRole("heading", { name: "Mon premier live" }).waitFor();
  assert.equal(await card.getByTestId("recording-title").textContent(), `📹 ${media.title}`);
  assert.equal(await card.getByTestId("author").textContent(), `@${username}`);
  assert.equal(await card.getByTestId("live-badge").textContent(), "LIVE");
  assert.equal(await card.getByTestId("recorded-at").textContent(), `Enregistré le ${parisDay(post.started_at)}`);
  assert.match(await card.getByTestId("duration").textContent(), /^Durée : 00:0[2-7]$/);
  assert.equal(await card.getByTestId("viewers").textContent(), "👁️ 0 spectateur");
  assert.equal(await card.getByTestId("messages").textContent(), "💬 0 message");

  const video = card.locator("video");
  assert.equal(await video.getAttribute("controls"), "");
  assert.equal(await video.getAttribute("poster"), media.poster_url);
  await assertPlaysAndSeeks(feed, video, liveId, media);
  await viewer.close();
});

/** An hour-long WebM (1:02:05 of a still picture at 1 fps, about 200 KB) made by ffmpeg. */
function hourLongWebm() {
  const dir = mkdtempSync(join(tmpdir(), "livekeep-long-"));
  try {
    const file = join(dir, "long.webm");
    execFileSync("ffmpeg", [
      "-v", "error",
      "-f", "lavfi", "-i", "color=c=0x3050a0:size=64x36:rate=1:duration=3725",
      "-c:v", "libvpx", "-b:v", "20k", "-g", "600", "-f", "webm", "-live", "1", file,
    ]);
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Publishes `bytes` as the recording of a new live of `token`'s user, over tus; returns the Post. */
async function publishRecording(server, token, content, bytes) {
  const live = await server.api("POST", "/api/posts/live/", { token, json: { content } });
  assert.equal(live.status, 201, JSON.stringify(live.body));
  const patch = await fetch(new URL(live.body.upload_url, server.url), {
    method: "PATCH",
    headers: {
      Authorization: `Bearer ${token}`,
      "Tus-Resumable": "1.0.0",
      "Upload-Offset": "0",
      "Upload-Length": String(bytes.length),
      "Content-Type": "application/offset+octet-stream",
    },
    body: bytes,
  });
  assert.equal(patch.status, 204, await patch.text());
  const stop = await server.api("PUT", `/api/posts/live/${live.body.live_id}/stop/`, {
    token,
    json: {
      video_data: {
        upload_url: live.body.upload_url,
        size: bytes.length,
        sha256: sha256(bytes),
        mime_type: "video/webm",
        live_id: live.body.live_id,
      },
    },
  });
  assert.equal(stop.status, 200, JSON.stringify(stop.body));
  return stop.body;
}

/** Keeps every camera stream the page opens in `window.cameraStreams`, to see when it is released. */
function watchCameraStreams() {
  const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  window.cameraStreams = [];
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await open(constraints);
    window.cameraStreams.push(stream);
    return stream;
  };
}

/** Whether every track of every camera stream the page opened has ended (camera light off). */
const cameraReleased = (page) =>
  page.evaluate(() => window.cameraStreams.length > 0 && window.cameraStreams.every((s) => s.getTracks().every((t) => t.readyState === "ended")));

/** The seconds on a `mm:ss` clock. */
const clockSeconds = (text) => text.split(":").reduce((total, part) => total * 60 + Number(part), 0);

test("a live keeps recording while its broadcaster browses the app, the on-air bar stops it, and signing out ends it cleanly", async () => {
  // Someone else's hour-long recording, for the broadcaster to open from the feed.
  const seeder = await env.server.api("POST", "/api/auth/register", {
    json: { username: uniqueName("seeder"), password: "seeder password" },
  });
  const seeded = await publishRecording(env.server, seeder.body.token, "Une heure de test", hourLongWebm());
  assert.equal(Math.floor(seeded.media_files[0].duration), 3725);

  const context = await env.browser.newContext({ locale: "fr-FR", timezoneId: "Europe/Paris" });
  await context.addInitScript(watchCameraStreams);
  const page = await context.newPage();
  await page.goto(env.server.url);
  const username = uniqueName("nav");
  await signUp(page, username);
  const seededCard = page.locator(`[data-post-id="${seeded.id}"]`);
  assert.equal(await seededCard.getByTestId("duration").textContent(), "Durée : 1:02:05");

  // No title typed: the live is named after its broadcaster, not after the button. An impatient
  // double click starts one live with one camera.
  await page.getByRole("button", { name: "Passer en direct" }).dblclick();
  await page.getByTestId("clock").waitFor();
  await waitForClock(page, "00:02");
  const liveId = await eventually(
    async () => (await env.server.api("GET", "/api/posts/?limit=5")).body.results.find((p) => p.live_status === "live")?.id,
    { what: "the live in the feed" },
  );
  const mine = (await env.server.api("GET", "/api/posts/?limit=20")).body.results.filter((p) => p.author.username === username);
  assert.deepEqual(mine.map((p) => p.id), [liveId], "one live for a double click");
  const { body: started } = await env.server.api("GET", `/api/posts/${liveId}/`);
  assert.equal(started.content, `Live de @${username}`);
  // Their own live's card leads to the recording panel, not to a viewer's seat.
  await page.locator(`[data-post-id="${liveId}"]`).getByRole("link", { name: `Live de @${username}` }).click();
  await waitForClock(page, "00:03");
  assert.equal(await page.evaluate(() => location.hash), "");
  assert.equal(await page.getByTestId("live-video").count(), 0);

  // Off to the replay of the seeded recording: the live keeps recording, the bar says so.
  const leftAt = clockSeconds(await page.getByTestId("clock").textContent());
  await seededCard.getByRole("link", { name: "Une heure de test" }).click();
  await page.getByTestId("replay-video").waitFor();
  assert.equal(await page.getByTestId("author").textContent(), `@${seeder.body.user.username}`);
  const bar = page.getByTestId("onair-bar");
  await bar.getByText("EN DIRECT", { exact: true }).waitFor();
  const barClock = () => page.getByTestId("onair-clock").textContent().then(clockSeconds);
  await eventually(async () => (await barClock()) >= leftAt + 3, { what: "the bar's clock running on another page" });
  assert.equal(await page.getByTestId("clock").count(), 0, "the recording panel is not on the replay page");
  mkdirSync(join(root, "tests", "artifacts"), { recursive: true });
  await page.screenshot({ path: join(root, "tests", "artifacts", "onair-bar.png") });

  // Back to the panel: the same camera stream in the preview, the same live, still recording.
  await bar.getByRole("link", { name: "Retour au direct" }).click();
  await page.getByTestId("clock").waitFor();
  assert.equal(await page.getByTestId("onair-bar").count(), 0, "no bar over the recording panel");
  const preview = await page.evaluate(() => {
    const shown = document.querySelector(".preview video")?.srcObject;
    return { same: shown === window.cameraStreams[0], live: shown?.getTracks().every((t) => t.readyState === "live"), opened: window.cameraStreams.length };
  });
  assert.deepEqual(preview, { same: true, live: true, opened: 1 });
  assert.ok(clockSeconds(await page.getByTestId("clock").textContent()) >= leftAt + 3);
  const { liveId: stopped, sha256: recorderSha } = await stopLive(page);
  assert.equal(stopped, liveId);

  // The recording covers the time spent on the other page; the camera is off.
  const { body: post } = await env.server.api("GET", `/api/posts/${liveId}/`);
  assert.equal(post.live_status, "ended");
  assert.equal(post.media_files[0].original_sha256, recorderSha);
  assert.ok(post.media_files[0].duration >= leftAt + 3, `the recording lasts ${post.media_files[0].duration} s`);
  await eventually(() => cameraReleased(page), { what: "the camera released after the stop" });

  // A live stopped from the bar on another page: the bar says it is saved and leads to it.
  await page.getByLabel("Titre du live").fill("Live arrêté depuis la barre");
  await page.getByRole("button", { name: "Passer en direct" }).click();
  await waitForClock(page, "00:02");
  await seededCard.getByRole("link", { name: "Une heure de test" }).click();
  await bar.getByRole("button", { name: "Arrêter" }).click();
  await bar.getByText("Live enregistré.").waitFor({ timeout: 60_000 });
  await eventually(() => cameraReleased(page), { what: "the camera released after a stop from the bar" });
  await bar.getByRole("link", { name: "Voir la vidéo" }).click();
  await page.getByRole("heading", { name: "Live arrêté depuis la barre" }).waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="replay-video"]')?.readyState >= 1);
  await page.getByRole("link", { name: "← Retour au fil" }).click();

  // Signing out while live asks first; declining keeps the live going.
  await page.getByLabel("Titre du live").fill("Live interrompu par la déconnexion");
  await page.getByRole("button", { name: "Passer en direct" }).click();
  await waitForClock(page, "00:02");
  const secondId = await eventually(
    async () => (await env.server.api("GET", "/api/posts/?limit=5")).body.results.find((p) => p.live_status === "live")?.id,
    { what: "the second live in the feed" },
  );
  page.once("dialog", (dialog) => dialog.dismiss());
  await page.getByRole("button", { name: "Se déconnecter" }).click();
  await waitForClock(page, "00:03");
  assert.equal(await page.getByTestId("whoami").textContent(), `@${username}`);
  // Accepting saves the live under its account, turns the camera off, then signs out.
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Se déconnecter" }).click();
  await page.locator('form.auth').waitFor({ timeout: 60_000 });
  const { body: second } = await env.server.api("GET", `/api/posts/${secondId}/`);
  assert.equal(second.live_status, "ended");
  assert.equal(second.media_files.length, 1);
  assert.ok(second.media_files[0].duration >= 2, `the second recording lasts ${second.media_files[0].duration} s`);
  await eventually(() => cameraReleased(page), { what: "the camera released after signing out" });
  await context.close();

  // The same card in English.
  const english = await env.browser.newContext({ locale: "en-US", timezoneId: "Europe/Paris" });
  const feed = await english.newPage();
  await feed.goto(env.server.url);
  const card = feed.locator(`[data-post-id="${seeded.id}"]`);
  await card.waitFor();
  assert.equal(await card.getByTestId("recording-title").textContent(), "📹 Vidéo du live - Une heure de test");
  assert.match(await card.getByTestId("recorded-at").textContent(), /^Recorded on \d{2}\/\d{2}\/\d{4} at \d{2}:\d{2}$/);
  assert.equal(await card.getByTestId("duration").textContent(), "Duration: 1:02:05");
  assert.equal(await card.getByTestId("viewers").textContent(), "👁️ 0 viewers");
  assert.equal(await card.getByTestId("messages").textContent(), "💬 0 messages");
  await english.close();
});

test("the page speaks English to a browser that prefers it", async () => {
  const context = await env.browser.newContext({ locale: "en-US" });
  const page = await context.newPage();
  await page.goto(env.server.url);
  await page.getByRole("heading", { name: "Sign up" }).waitFor();
  await page.getByRole("heading", { name: "Feed" }).waitFor();
  // What a username and a password must be is said before the first try, and read with the field.
  assert.equal(await page.getByRole("textbox", { name: "Username" }).getAttribute("aria-describedby"), "username-hint");
  assert.equal(await page.locator("#username-hint").textContent(), "Letters, digits, “.”, “_” and “-”.");
  assert.equal(await page.locator("#password-hint").textContent(), "At least 8 characters.");
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

test("a person whose session expired is told to log in again, and the camera goes off", async () => {
  const context = await env.browser.newContext({ locale: "fr-FR" });
  await context.addInitScript(watchCameraStreams);
  await context.addInitScript(() =>
    localStorage.setItem("livekeep.session", JSON.stringify({ user: { id: 1, username: "ghost" }, token: "revoked-token" })),
  );
  const page = await context.newPage();
  await page.goto(env.server.url);
  await page.getByRole("button", { name: "Passer en direct" }).click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.equal(await alert.textContent(), "Votre session a expiré : déconnectez-vous puis reconnectez-vous.");
  await eventually(() => cameraReleased(page), { what: "the camera released after a failed start" });
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
