// Shared pieces of the end-to-end tests: the real `livekeep` binary on a temporary data
// directory, headless Chromium with a fake camera, and the checks we make on recordings.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { Agent, createServer, request as httpRequest } from "node:http";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before } from "node:test";
import { chromium } from "playwright-core";

export const root = resolve(import.meta.dirname, "../..");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
// LIVEKEEP_SERVER_BIN: another build (`make bench` runs the two-node test on its release build).
export const serverBin = process.env.LIVEKEEP_SERVER_BIN ?? join(targetDir, "debug", "livekeep");

let scaleOutCounter = 0;
// LIVEKEEP_E2E_LOG_DIR: each server's log also goes to a file there as it is written, so a test
// that hangs until its timeout still leaves them (scripts/bench.sh sets it for its checks).
const logDir = process.env.LIVEKEEP_E2E_LOG_DIR;
let serverCounter = 0;

/**
 * The scale-out configuration (scripts/services.sh), when asked for: with
 * LIVEKEEP_TEST_DATABASE=postgres a fresh PostgreSQL database on LIVEKEEP_TEST_POSTGRES_URL's
 * server, with LIVEKEEP_TEST_STORAGE=s3 a fresh prefix in LIVEKEEP_TEST_S3_BUCKET (the AWS_*
 * variables reach the server through its environment). Returns the server's extra environment
 * and a function that drops the database.
 */
export function scaleOutEnvironment() {
  const env = {};
  let dispose = () => {};
  const name = `livekeep_e2e_${process.pid}_${scaleOutCounter++}`;
  const database = process.env.LIVEKEEP_TEST_DATABASE ?? "sqlite";
  if (database === "postgres") {
    const admin = process.env.LIVEKEEP_TEST_POSTGRES_URL;
    if (!admin) throw new Error("LIVEKEEP_TEST_DATABASE=postgres needs LIVEKEEP_TEST_POSTGRES_URL (scripts/services.sh)");
    const psql = (sql) => execFileSync("psql", [admin, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], { stdio: ["ignore", "ignore", "inherit"] });
    psql(`CREATE DATABASE ${name}`);
    const url = new URL(admin);
    url.pathname = `/${name}`;
    env.DATABASE_URL = url.toString();
    dispose = () => psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } else if (database !== "sqlite") {
    throw new Error(`LIVEKEEP_TEST_DATABASE=${database}: use sqlite or postgres`);
  }
  const storage = process.env.LIVEKEEP_TEST_STORAGE ?? "file";
  if (storage === "s3") {
    const bucket = process.env.LIVEKEEP_TEST_S3_BUCKET;
    if (!bucket || !process.env.AWS_ENDPOINT_URL) {
      throw new Error("LIVEKEEP_TEST_STORAGE=s3 needs LIVEKEEP_TEST_S3_BUCKET and AWS_ENDPOINT_URL (scripts/services.sh)");
    }
    env.LIVEKEEP_STORAGE_URL = `s3://${bucket}/${name}`;
  } else if (storage !== "file") {
    throw new Error(`LIVEKEEP_TEST_STORAGE=${storage}: use file or s3`);
  }
  return { env, dispose };
}

/**
 * Servers still running. A test file that times out is ended by `--test-force-exit` without its
 * `after` hooks: its servers are killed here, or they outlive the run (a server stuck in a
 * deadlock also ignores SIGTERM, whose graceful shutdown needs its runtime).
 */
const runningServers = new Map(); // child process → its Server
process.on("exit", () => {
  for (const child of runningServers.keys()) child.kill("SIGKILL");
});

/** The last lines each running server logged: what a test that timed out waiting reports. */
function runningServersLogTails(lines = 40) {
  return [...runningServers.values()]
    .map((server) => `--- last ${lines} log lines of the server on ${server.url} ---\n${server.logs.join("").split("\n").slice(-lines).join("\n")}`)
    .join("\n");
}

/** How long a server may take to shut down gracefully before it is killed. */
const gracefulStopMs = 20_000;

/**
 * A running `livekeep serve`; restartable on the same data directory (and database, and prefix).
 * Nodes of one cluster pass the same `scaleOut` (from scaleOutEnvironment()): they share its
 * database and store, and whoever created it disposes of it.
 */
export class Server {
  constructor({ env = {}, args = [], dataDir, scaleOut, wwwDir = join(root, "www", "dist") } = {}) {
    const shared = scaleOut !== undefined;
    scaleOut ??= scaleOutEnvironment();
    this.env = { ...scaleOut.env, ...env };
    this.disposeScaleOut = shared ? () => {} : scaleOut.dispose;
    this.args = args;
    this.wwwDir = wwwDir;
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), "livekeep-e2e-"));
    this.ownsDataDir = !dataDir;
    this.logs = [];
  }

  /** Starts the binary and resolves once it printed the URL it listens on. */
  async start(listen = "127.0.0.1:0") {
    const child = spawn(
      serverBin,
      ["serve", "--listen", listen, "--data-dir", this.dataDir, "--www-dir", this.wwwDir, ...this.args],
      { env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info", ...this.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child = child;
    runningServers.set(child, this);
    child.once("exit", () => runningServers.delete(child));
    const logFile = logDir && join(logDir, `server-${process.pid}-${serverCounter++}.log`);
    child.stderr.on("data", (d) => {
      this.logs.push(d.toString());
      if (logFile) appendFileSync(logFile, d);
    });
    this.url = await new Promise((resolveUrl, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${this.logs.join("")}`)), 30_000);
      child.stdout.on("data", (d) => {
        out += d.toString();
        const match = out.match(/listening on (http:\/\/\S+?)\/?\s/);
        if (match) {
          clearTimeout(timer);
          resolveUrl(match[1]);
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${this.logs.join("")}`));
      });
    });
    this.listen = new URL(this.url).host;
    return this.url;
  }

  /** SIGKILL: no graceful shutdown, as a crash. */
  async kill() {
    await this.#signal("SIGKILL");
  }

  /** SIGTERM, then SIGKILL if it has not exited after `gracefulStopMs` (the test fails). */
  async stop() {
    if (!(await this.#signal("SIGTERM", gracefulStopMs))) {
      await this.#signal("SIGKILL");
      throw new Error(`the server did not shut down within ${gracefulStopMs} ms of SIGTERM:\n${this.logs.slice(-20).join("")}`);
    }
  }

  /** Sends `signal` and waits for the exit, at most `timeoutMs`; whether it exited. */
  async #signal(signal, timeoutMs = Infinity) {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return true;
    let timer;
    const exited = new Promise((r) => child.once("exit", () => r(true)));
    const late = new Promise((r) => {
      if (Number.isFinite(timeoutMs)) timer = setTimeout(() => r(false), timeoutMs);
    });
    child.kill(signal);
    const result = await Promise.race([exited, late]);
    clearTimeout(timer);
    return result;
  }

  /** Stops the server and removes the data directory (and database) it created. */
  async dispose() {
    await this.stop();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
    this.disposeScaleOut();
  }

  /** JSON API call; returns { status, body }. */
  async api(method, path, { token, json } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (json !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(this.url + path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  }
}

/**
 * A load balancer in front of several nodes: a reverse proxy on 127.0.0.1 that sends each request
 * to the next target in turn, with no stickiness. Bodies stream both ways (tus PATCHes, SSE, Range
 * responses); a target that cannot be reached, or dies before answering, gets the client a 502,
 * as a real load balancer would. `served` lists which target took each request, with the bytes of
 * its answer's body.
 */
export class RoundRobinProxy {
  constructor(targets, { rangeChunk } = {}) {
    this.setTargets(targets);
    // With `rangeChunk`, a Range request asks the target for at most that many bytes (the
    // answer's Content-Range says so, and a player asks again): the bytes counted are then the
    // bytes the player wanted, not what socket buffers hold of an open-ended answer.
    this.rangeChunk = rangeChunk;
    this.served = [];
    this.turn = 0;
    // Keep-alive towards the nodes, as a load balancer's pool; dropped with them on close.
    this.agent = new Agent({ keepAlive: true });
  }

  /** The base URLs requests go to from now on (e.g. only the survivors). */
  setTargets(targets) {
    this.targets = targets.map((t) => new URL(t));
  }

  async start() {
    this.server = createServer((req, res) => this.#forward(req, res));
    // SSE and long uploads: no timeouts of the proxy's own.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 0;
    this.server.keepAliveTimeout = 30_000;
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this.url;
  }

  #forward(req, res) {
    const target = this.targets[this.turn++ % this.targets.length];
    const entry = { at: Date.now(), method: req.method, path: req.url, target: target.origin, status: undefined, bytes: 0 };
    this.served.push(entry);
    const headers = { ...req.headers };
    const range = this.rangeChunk && /^bytes=(\d+)-(\d*)$/.exec(headers.range ?? "");
    if (range) {
      const first = Number(range[1]);
      const last = first + this.rangeChunk - 1;
      headers.range = `bytes=${first}-${range[2] ? Math.min(Number(range[2]), last) : last}`;
    }
    const upstream = httpRequest({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers,
      agent: this.agent,
    });
    upstream.on("response", (answer) => {
      entry.status = answer.statusCode;
      // Bytes of the answer's body the target sent (what a player cost it).
      answer.on("data", (chunk) => (entry.bytes += chunk.length));
      res.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
      answer.pipe(res);
      // A node dying mid-body: the client must see a cut, not a short complete answer.
      answer.on("aborted", () => res.destroy());
      answer.on("error", () => res.destroy());
    });
    upstream.on("error", () => {
      // Drain what is left of the body: a browser still uploading it would not read the answer
      // until its request timeout.
      req.unpipe(upstream);
      req.resume();
      if (!res.headersSent) {
        entry.status = 502;
        res.writeHead(502, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: "bad_gateway", message: `${target.origin} did not answer` } }));
      } else {
        res.destroy();
      }
    });
    // The client went away (closed SSE, aborted PATCH): so does the request to the node.
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  /** How many requests matching `method` and `pathPrefix` each target answered with `status`. */
  countBy({ method, pathPrefix, status }) {
    const counts = new Map(this.targets.map((t) => [t.origin, 0]));
    for (const e of this.served) {
      if (e.method === method && e.path.startsWith(pathPrefix) && (status === undefined || e.status === status)) {
        counts.set(e.target, (counts.get(e.target) ?? 0) + 1);
      }
    }
    return counts;
  }

  async close() {
    if (!this.server) return;
    const closed = new Promise((r) => this.server.close(r));
    this.server.closeAllConnections();
    this.agent.destroy();
    await closed;
  }
}

export const chromiumArgs = [
  "--no-sandbox",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-gpu",
  "--disable-quic",
];

export function launchBrowser() {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: chromiumArgs });
}

/**
 * Records every tus PATCH body sent, and which the server acknowledged (204), keyed by offset, so
 * a test can rebuild the exact bytes that crossed the network independently of the recorder and
 * the server.
 */
export function captureAcknowledgedPatches(target) {
  const acknowledged = new Map();
  const sent = new Map();
  const isPatch = (request) => request.method() === "PATCH" && new URL(request.url()).pathname.startsWith("/api/uploads/");
  target.on("request", (request) => {
    if (!isPatch(request)) return;
    const body = request.postDataBuffer() ?? Buffer.alloc(0);
    if (body.length === 0) return;
    // Every body sent at an offset: a PATCH resent there (its answer late, the recorder resumed
    // after a HEAD) may carry more bytes than the one the server committed.
    const offset = Number(request.headers()["upload-offset"]);
    const bodies = sent.get(offset) ?? [];
    if (!bodies.some((b) => b.equals(body))) bodies.push(body);
    sent.set(offset, bodies);
  });
  target.on("response", (response) => {
    const request = response.request();
    if (!isPatch(request) || response.status() !== 204) return;
    const body = request.postDataBuffer() ?? Buffer.alloc(0);
    if (body.length > 0) acknowledged.set(Number(request.headers()["upload-offset"]), body);
  });
  return {
    /** The acknowledged bytes in order; throws if a gap or an overlap shows. */
    bytes: () => contiguous(acknowledged),
    /** Where the last acknowledged byte ends: the server may hold more, never less. */
    acknowledgedEnd: () => Math.max(0, ...[...acknowledged].map(([offset, body]) => offset + body.length)),
    /**
     * The bytes the server holds when its answers could not all be seen (a page closed with a
     * PATCH in flight): the prefix of what was sent, in whole PATCHes, whose SHA-256 is `sha`.
     */
    sentPrefixWithSha(sha) {
      const search = (next, hash, parts) => {
        if (hash.copy().digest("hex") === sha) return Buffer.concat(parts);
        for (const piece of sent.get(next) ?? []) {
          const found = search(next + piece.length, hash.copy().update(piece), [...parts, piece]);
          if (found) return found;
        }
        return undefined;
      };
      return search(0, createHash("sha256"), []);
    },
  };
}

function contiguous(pieces) {
  const offsets = [...pieces.keys()].sort((a, b) => a - b);
  let next = 0;
  const parts = [];
  for (const offset of offsets) {
    if (offset !== next) throw new Error(`acknowledged PATCHes leave a gap or overlap at ${next} (next piece at ${offset})`);
    parts.push(pieces.get(offset));
    next += pieces.get(offset).length;
  }
  return Buffer.concat(parts);
}

export function sha256(buffer) {
  return createHash("sha256").update(buffer).digest("hex");
}

/** MD5 of every decoded video frame: equal lists mean the same pictures, whatever the container. */
export function videoFrameMd5s(bytes, name) {
  const dir = mkdtempSync(join(tmpdir(), "livekeep-frames-"));
  try {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    const out = execFileSync("ffmpeg", ["-v", "error", "-i", file, "-map", "0:v:0", "-f", "framemd5", "-"], {
      maxBuffer: 64 << 20,
    }).toString();
    return out
      .split("\n")
      .filter((line) => line && !line.startsWith("#"))
      .map((line) => line.split(",").at(-1).trim());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** ffprobe's container duration in seconds (NaN when it has none). */
export function probeDuration(bytes, name) {
  const dir = mkdtempSync(join(tmpdir(), "livekeep-probe-"));
  try {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    const out = execFileSync("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", file]);
    return Number.parseFloat(out.toString());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The feed's player of a finished recording: it plays, knows the Media's duration at once, and
 * seeks to 70 %, showing another frame. `video` is the post's <video> on `feed`.
 */
export async function assertPlaysAndSeeks(feed, video, liveId, media) {
  await video.evaluate((v) => {
    v.muted = true;
    return v.play();
  });
  await feed.waitForFunction((id) => document.querySelector(`[data-post-id="${id}"] video`)?.currentTime > 0.5, liveId, {
    timeout: 15_000,
  });
  const seek = await video.evaluate(async (v) => {
    v.pause();
    const frame = () => {
      const canvas = document.createElement("canvas");
      canvas.width = 64;
      canvas.height = 48;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(v, 0, 0, 64, 48);
      return Array.from(ctx.getImageData(0, 0, 64, 48).data).join(",");
    };
    const seekTo = (t) =>
      new Promise((resolve) => {
        v.addEventListener("seeked", () => resolve(), { once: true });
        v.currentTime = t;
      });
    await seekTo(0);
    const first = frame();
    const target = v.duration * 0.7;
    await seekTo(target);
    return { duration: v.duration, target, landed: v.currentTime, changed: frame() !== first };
  });
  assert.ok(Number.isFinite(seek.duration), `video.duration is ${seek.duration}`);
  assert.ok(Math.abs(seek.duration - media.duration) < 0.25, `player ${seek.duration} s vs media ${media.duration} s`);
  assert.ok(Math.abs(seek.landed - seek.target) < 0.1, `asked ${seek.target}, landed at ${seek.landed}`);
  assert.ok(seek.changed, "the frame after seeking should differ from the first frame");
}

/** A loopback port that was free a moment ago (for a server that must know its URL first). */
export async function freePort() {
  const probe = createServer();
  await new Promise((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  return port;
}

/** A username nobody has taken yet in this run. */
export function uniqueName(prefix = "e2e") {
  return `${prefix}_${process.pid}_${Math.floor(Math.random() * 1e9).toString(36)}`;
}

/** Signs up through the page's form. */
export async function signUp(page, username, password = "correct horse battery") {
  await page.locator('input[name="username"]').fill(username);
  await page.locator('input[name="password"]').fill(password);
  await page.locator('form.auth button[type="submit"]').click();
  await page.getByTestId("whoami").waitFor();
}

/** Starts a live from the page's form and waits until the recorder runs. */
export async function goLive(page, title) {
  await page.getByLabel(/Titre du live|Live title/).fill(title);
  await page.getByRole("button", { name: /Passer en direct|Go live/ }).click();
  await page.getByTestId("clock").waitFor();
}

/** Waits until the page's live clock shows at least `mmss` (e.g. "00:05"). */
export async function waitForClock(page, mmss, timeout = 60_000) {
  await page.waitForFunction((want) => document.querySelector('[data-testid="clock"]')?.textContent >= want, mmss, {
    timeout,
  });
}

/** Clicks Stop and resolves with what the recorder reported: its SHA-256 and the live id. */
export async function stopLive(page, timeout = 60_000) {
  await page.getByRole("button", { name: /^(Arrêter|Stop)$/ }).click();
  const saved = page.getByTestId("saved");
  try {
    await saved.waitFor({ timeout });
  } catch (error) {
    // Say where the stop stood (uploading, finalizing, an error shown) and what the server did.
    const panel = await page
      .locator(".golive")
      .innerText({ timeout: 1000 })
      .catch((e) => `(unreadable: ${e.message})`);
    error.message += `\nthe recording panel shows:\n${panel}\n${runningServersLogTails()}`;
    throw error;
  }
  return { sha256: await saved.getAttribute("data-sha256"), liveId: Number(await saved.getAttribute("data-live-id")) };
}

/** Polls `check` until it returns a truthy value. */
export async function eventually(check, { timeout = 30_000, interval = 250, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/**
 * One server and one browser for a whole test file, started before its tests and stopped after.
 * Read them as `env.server` and `env.browser` inside tests.
 */
export function serverAndBrowser(serverOptions) {
  const env = {};
  before(async () => {
    env.server = new Server(serverOptions);
    await env.server.start();
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.dispose();
  });
  return env;
}
