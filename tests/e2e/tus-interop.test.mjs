// An unmodified tus client (tus-js-client in Node) uploads a live's recording with a deferred
// length, is interrupted half-way, resumes from the server's offset, and the stop accepts it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tus from "tus-js-client";
import { Server, sha256, uniqueName } from "./harness.mjs";

let server;
before(async () => {
  server = new Server();
  await server.start();
});
after(async () => server?.dispose());

/** A few seconds of VP8 + Opus WebM made by ffmpeg, shaped like a live recording. */
function liveWebm() {
  const dir = mkdtempSync(join(tmpdir(), "livekeep-tus-"));
  try {
    const file = join(dir, "live.webm");
    execFileSync("ffmpeg", [
      "-v", "error",
      "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4",
      "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
      "-c:v", "libvpx", "-b:v", "400k", "-g", "25", "-c:a", "libopus",
      "-f", "webm", "-live", "1", file,
    ]);
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function upload(bytes, options) {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(bytes, {
      chunkSize: 16 * 1024,
      uploadLengthDeferred: true,
      retryDelays: [],
      ...options,
      onError: reject,
      onSuccess: () => resolve(u),
    });
    options.onUpload?.(u);
    u.start();
  });
}

test("tus-js-client uploads with a deferred length, is interrupted, resumes, and the stop accepts the bytes", async () => {
  const bytes = liveWebm();
  assert.ok(bytes.length > 64 * 1024, "the fixture should span several chunks");
  const register = await server.api("POST", "/api/auth/register", {
    json: { username: uniqueName("tus"), password: "tus client password" },
  });
  assert.equal(register.status, 201);
  const token = register.body.token;
  const live = await server.api("POST", "/api/posts/live/", { token, json: { content: "tus interop" } });
  assert.equal(live.status, 201);
  const headers = { Authorization: `Bearer ${token}` };
  const uploadUrl = new URL(live.body.upload_url, server.url).toString();

  // First attempt: abort once about half of the bytes are acknowledged.
  let first;
  let interruptedAt = 0;
  await new Promise((resolve, reject) => {
    first = new tus.Upload(bytes, {
      uploadUrl,
      headers,
      chunkSize: 16 * 1024,
      uploadLengthDeferred: true,
      retryDelays: [],
      onError: reject,
      onSuccess: () => reject(new Error("the upload should have been interrupted")),
      onChunkComplete: (_chunk, accepted) => {
        if (accepted >= bytes.length / 2 && !interruptedAt) {
          interruptedAt = accepted;
          first.abort().then(resolve, reject);
        }
      },
    });
    first.start();
  });
  assert.ok(interruptedAt > 0 && interruptedAt < bytes.length);

  const head = await fetch(uploadUrl, { method: "HEAD", headers: { ...headers, "Tus-Resumable": "1.0.0" } });
  assert.equal(head.status, 200);
  const offset = Number(head.headers.get("upload-offset"));
  assert.equal(offset, interruptedAt, "the server's offset is what it acknowledged");
  assert.equal(head.headers.get("upload-defer-length"), "1");

  // Second attempt: a fresh client resumes from the server's offset and declares the length.
  await upload(bytes, { uploadUrl, headers });
  const done = await fetch(uploadUrl, { method: "HEAD", headers: { ...headers, "Tus-Resumable": "1.0.0" } });
  assert.equal(Number(done.headers.get("upload-offset")), bytes.length);
  assert.equal(Number(done.headers.get("upload-length")), bytes.length);

  const stop = await server.api("PUT", `/api/posts/live/${live.body.live_id}/stop/`, {
    token,
    json: {
      video_data: {
        upload_url: live.body.upload_url,
        duration: 4,
        size: bytes.length,
        sha256: sha256(bytes),
        mime_type: "video/webm",
        title: "tus interop",
        live_id: live.body.live_id,
      },
    },
  });
  assert.equal(stop.status, 200, JSON.stringify(stop.body));
  assert.equal(stop.body.media_files[0].original_sha256, sha256(bytes));
});

test("tus-js-client creates an upload for a live through the creation extension", async () => {
  const bytes = liveWebm();
  const register = await server.api("POST", "/api/auth/register", {
    json: { username: uniqueName("tusc"), password: "tus client password" },
  });
  const token = register.body.token;
  const live = await server.api("POST", "/api/posts/live/", { token, json: { content: "tus creation" } });
  const u = await upload(bytes, {
    endpoint: new URL("/api/uploads/", server.url).toString(),
    headers: { Authorization: `Bearer ${token}` },
    metadata: { live_id: String(live.body.live_id), filename: "live.webm" },
  });
  assert.match(u.url, /\/api\/uploads\/[0-9a-f]{32}$/);
  const head = await fetch(u.url, {
    method: "HEAD",
    headers: { Authorization: `Bearer ${token}`, "Tus-Resumable": "1.0.0" },
  });
  assert.equal(Number(head.headers.get("upload-offset")), bytes.length);
});
