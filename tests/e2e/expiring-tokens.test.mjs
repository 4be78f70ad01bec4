// The recorder's getToken with the real server and the host app's JWTs: `livekeep serve --auth
// jwt` and tokens that expire two seconds after they are minted, across an eight-second live.
// The recorder renews them after each 401 and the live is saved whole.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, launchBrowser, probeDuration, root } from "./harness.mjs";

const SECRET = "e2e-host-app-secret-of-at-least-32-bytes";
/** The server's leeway past `exp` (server/src/accounts/host.rs, LEEWAY_SECS). */
const LEEWAY_SECS = 30;
/** For the server, a token is good for this long after it is minted. */
const TOKEN_LIFE_SECS = 2;

/** An HS256 JWT for the host user 42, as the host app would mint it. */
function mint() {
  const part = (json) => Buffer.from(JSON.stringify(json)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  // `exp` set so that, leeway included, the token expires TOKEN_LIFE_SECS after now.
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub: "42", name: "Host user", exp: now + TOKEN_LIFE_SECS - LEEWAY_SECS })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

// A page of its own next to the recorder's package: it records with getToken only.
const www = mkdtempSync(join(tmpdir(), "livekeep-tokens-page-"));
cpSync(join(root, "recorder-wasm", "pkg"), join(www, "pkg"), { recursive: true });
writeFileSync(
  join(www, "index.html"),
  '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body><script type="module" src="./live.js"></script></body></html>',
);
writeFileSync(
  join(www, "live.js"),
  `import { createLiveRecorder } from "./pkg/index.js";
window.record = async (seconds) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const errors = [];
  const recorder = await createLiveRecorder({
    getToken: () => window.mintToken(),
    title: "Expiring tokens",
    onError: (error) => errors.push(error.code),
  });
  await recorder.start(stream);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const videoData = await recorder.stop();
  stream.getTracks().forEach((t) => t.stop());
  return { videoData, errors };
};
window.ready = true;
`,
);
const server = new Server({ wwwDir: www, args: ["--auth", "jwt", "--auth-jwt-secret", SECRET] });
await server.start();
const browser = await launchBrowser();
after(async () => {
  await browser.close();
  await server.dispose();
  rmSync(www, { recursive: true, force: true });
});

test("a live outlasts tokens that expire every two seconds: getToken renews them and every byte is saved", async () => {
  const page = await browser.newPage();
  let minted = 0;
  const refused = [];
  await page.exposeFunction("mintToken", () => {
    minted += 1;
    return mint();
  });
  page.on("response", (response) => {
    if (response.status() === 401) refused.push(new URL(response.url()).pathname);
  });
  await page.goto(`${server.url}/`);
  await page.waitForFunction(() => window.ready === true);
  const { videoData, errors } = await page.evaluate(() => window.record(8));

  assert.ok(minted >= 3, `getToken was called ${minted} time(s); tokens live ${TOKEN_LIFE_SECS} s in an 8 s live`);
  assert.ok(refused.length >= 2, `the server refused ${refused.length} expired token(s)`);
  assert.ok(!errors.includes("unauthenticated"), `the recorder gave up: ${errors}`);

  const { status, body: post } = await server.api("GET", `/api/posts/${videoData.live_id}/`);
  assert.equal(status, 200);
  assert.equal(post.live_status, "ended");
  assert.equal(post.author.external_id, "42");
  const media = post.media_files[0];
  assert.equal(media.original_sha256, videoData.sha256, "every byte the recorder produced");
  assert.ok(media.duration > 6.5, `the recording lasts ${media.duration} s of the 8 s live`);
  const served = Buffer.from(await (await fetch(server.url + media.file_url)).arrayBuffer());
  assert.equal(served.length, media.size);
  const ext = media.mime_type.startsWith("video/mp4") ? "mp4" : "webm";
  const probed = probeDuration(served, `served.${ext}`);
  assert.ok(Math.abs(probed - media.duration) < 0.05, `ffprobe says ${probed} s, the Media ${media.duration} s`);
  await page.close();
});
