// Issue 16: a finalized 10-minute MP4 tells Chromium its duration as soon as its metadata loads,
// and seeks to 90 % and plays after the server sent only a few MiB for that seek.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tus from "tus-js-client";
import { RoundRobinProxy, Server, launchBrowser, sha256, uniqueName } from "./harness.mjs";

let server;
let proxy;
let browser;
before(async () => {
  server = new Server();
  await server.start();
  // Counts the bytes the server sends for each request, each Range answered 256 KiB at a time.
  proxy = new RoundRobinProxy([server.url], { rangeChunk: 256 << 10 });
  await proxy.start();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.dispose();
});

/** Ten minutes of H.264 + AAC at a small size, fragmented each second as Safari records it. */
function tenMinuteMp4() {
  const dir = mkdtempSync(join(tmpdir(), "livekeep-mp4-seek-"));
  try {
    const file = join(dir, "long.mp4");
    execFileSync("ffmpeg", [
      "-v", "error",
      "-f", "lavfi", "-i", "testsrc2=size=256x144:rate=15",
      "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
      "-t", "600", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "250k", "-g", "15",
      "-c:a", "aac", "-b:a", "48k",
      "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "1000000",
      "-f", "mp4", file,
    ]);
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Uploads `bytes` to a live's tus upload in 8 MiB PATCHes, as tus-js-client does. */
function upload(bytes, uploadUrl, token) {
  return new Promise((resolve, reject) => {
    new tus.Upload(bytes, {
      uploadUrl,
      headers: { Authorization: `Bearer ${token}` },
      chunkSize: 8 << 20,
      uploadLengthDeferred: true,
      retryDelays: [],
      onError: reject,
      onSuccess: resolve,
    }).start();
  });
}

/** Bytes the server sent for requests to `path` so far. */
function sentFor(path) {
  return proxy.served.filter((e) => e.path === path).reduce((sum, e) => sum + e.bytes, 0);
}

test("a finalized 10-minute MP4 knows its duration at loadedmetadata and seeks to 90 % after a few MiB", async () => {
  const bytes = tenMinuteMp4();
  const register = await server.api("POST", "/api/auth/register", {
    json: { username: uniqueName("seek"), password: "seeking password" },
  });
  const token = register.body.token;
  const live = await server.api("POST", "/api/posts/live/", { token, json: { content: "ten minutes" } });
  await upload(bytes, new URL(live.body.upload_url, server.url).toString(), token);
  const stopped = await server.api("PUT", `/api/posts/live/${live.body.live_id}/stop/`, {
    token,
    json: { video_data: { upload_url: live.body.upload_url, size: bytes.length, sha256: sha256(bytes), duration: 600, mime_type: "video/mp4" } },
  });
  assert.equal(stopped.status, 200);
  const media = stopped.body.media_files[0];
  assert.ok(Math.abs(media.duration - 600) < 0.5, `media duration ${media.duration}`);

  const page = await browser.newPage();
  await page.setContent('<video id="v" preload="metadata" muted></video>');
  await page.evaluate((src) => (document.getElementById("v").src = src), proxy.url + media.file_url);
  await page.waitForFunction(() => document.getElementById("v").readyState >= 1, null, { timeout: 30_000 });
  const duration = await page.evaluate(() => document.getElementById("v").duration);
  assert.ok(Math.abs(duration - media.duration) < 0.5, `duration at loadedmetadata: ${duration}`);
  const forMetadata = sentFor(media.file_url);

  const target = duration * 0.9;
  const played = await page.evaluate(async (to) => {
    const v = document.getElementById("v");
    v.currentTime = to;
    await new Promise((r) => v.addEventListener("seeked", r, { once: true }));
    await v.play();
    await new Promise((r) => {
      const check = () => (v.currentTime > to + 0.5 ? r() : requestAnimationFrame(check));
      check();
    });
    return v.currentTime;
  }, target);
  const forSeek = sentFor(media.file_url) - forMetadata;
  assert.ok(played > target, `played from ${target} to ${played}`);
  console.log(`sent ${(forMetadata / 2 ** 20).toFixed(2)} MiB until loadedmetadata, ${(forSeek / 2 ** 20).toFixed(2)} MiB for the seek (file ${(bytes.length / 2 ** 20).toFixed(1)} MiB)`);
  assert.ok(forSeek < 4 << 20, `the seek cost ${forSeek} bytes`);
  assert.ok(forMetadata < 4 << 20, `the metadata cost ${forMetadata} bytes`);
  await page.close();
});
