// Issue 6's package: recorder-wasm/pkg (built by scripts/build.sh) used the way an app uses
// @livekeep/recorder — its manifest, an ESM import through its exports map, the README's
// React example type-checked against its types, a live recorded from a plain
// <script type="module"> page in Chromium against the real server, and a webpack 5 bundle.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { gzipSync } from "node:zlib";
import webpack from "webpack";
import { launchBrowser, root, serverAndBrowser, uniqueName } from "./harness.mjs";

const pkgDir = join(root, "recorder-wasm", "pkg");
const wwwModules = join(root, "www", "node_modules");
const tsc = join(wwwModules, ".bin", "tsc");
const manifest = () => JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));

/** A throwaway app folder whose node_modules holds the package (and React) as symlinks. */
function makeApp() {
  const app = mkdtempSync(join(tmpdir(), "livekeep-app-"));
  const link = (target, name) => {
    mkdirSync(join(app, "node_modules", name, ".."), { recursive: true });
    symlinkSync(target, join(app, "node_modules", name), "dir");
  };
  link(pkgDir, "@livekeep/recorder");
  link(join(wwwModules, "react"), "react");
  link(join(wwwModules, "@types", "react"), "@types/react");
  link(join(wwwModules, "csstype"), "csstype");
  return app;
}

const apps = [];
function app() {
  const dir = makeApp();
  apps.push(dir);
  return dir;
}

after(() => {
  for (const dir of apps) rmSync(dir, { recursive: true, force: true });
});

test("the package's manifest is npm-ready and names files that exist", () => {
  const pkg = manifest();
  const cargo = readFileSync(join(root, "Cargo.toml"), "utf8");
  const version = cargo.match(/\[workspace\.package\][^[]*?\bversion\s*=\s*"([^"]+)"/)?.[1];
  assert.equal(pkg.name, "@livekeep/recorder");
  assert.equal(pkg.version, version, "the version is Cargo's");
  assert.equal(pkg.type, "module");
  assert.equal(pkg.sideEffects, false);
  assert.equal(pkg.types, "./index.d.ts");
  assert.deepEqual(pkg.exports["."], { types: "./index.d.ts", import: "./index.js" });
  assert.deepEqual(pkg.exports["./react"], { types: "./react.d.ts", import: "./react.js" });
  assert.equal(Object.keys(pkg.exports["."])[0], "types", "types must come first to be picked");
  assert.ok(pkg.peerDependencies.react, "React is a peer dependency");
  assert.equal(pkg.peerDependenciesMeta.react.optional, true, "and optional: the core needs no React");
  for (const file of [
    ...pkg.files,
    ...Object.values(pkg.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e))),
  ]) {
    assert.ok(existsSync(join(pkgDir, file)), `${file} is in the package`);
  }
  assert.ok(pkg.files.includes("recorder_wasm_bg.wasm"), "the wasm module is published");
  assert.equal(
    readFileSync(join(pkgDir, "README.md"), "utf8"),
    readFileSync(join(root, "recorder-wasm", "js", "README.md"), "utf8"),
    "the published README is the one kept in recorder-wasm/js",
  );
  const gzipped = gzipSync(readFileSync(join(pkgDir, "recorder_wasm_bg.wasm")), { level: 9 }).length;
  assert.ok(gzipped < 150 * 1024, `the wasm module is ${gzipped} bytes gzipped, over 150 KiB`);
});

test("an app imports both entry points through the exports map and the wasm runs", () => {
  const dir = app();
  const script = `
    import { readFileSync } from "node:fs";
    import * as recorder from "@livekeep/recorder";
    import * as react from "@livekeep/recorder/react";
    const wasm = readFileSync(new URL(import.meta.resolve("@livekeep/recorder").replace(/index\\.js$/, "recorder_wasm_bg.wasm")));
    await recorder.load(wasm);
    await recorder.load(); // a second call reuses the first load (no fetch, which Node cannot do here)
    let code;
    try { new recorder.LiveRecorder({}); } catch (e) { code = e.code; }
    console.log(JSON.stringify({ core: Object.keys(recorder).sort(), react: Object.keys(react).sort(), code }));
  `;
  // --preserve-symlinks: the package resolves "react" from the app's node_modules, as installed.
  const out = execFileSync(process.execPath, ["--preserve-symlinks", "--input-type=module", "-e", script], {
    cwd: dir,
    encoding: "utf8",
  });
  const seen = JSON.parse(out);
  assert.deepEqual(seen.core, ["LiveRecorder", "createLiveRecorder", "load", "pickMimeType", "resumePending"]);
  assert.deepEqual(seen.react, ["resumePendingRecordings", "useLiveRecorder"]);
  assert.equal(seen.code, "invalid_options", "the wasm checked the options and threw a coded Error");
});

/** The README's first ```tsx block: the ten-line integration. */
function readmeExample() {
  const readme = readFileSync(join(pkgDir, "README.md"), "utf8");
  const example = readme.match(/```tsx\n([\s\S]*?)```/)?.[1];
  assert.ok(example, "the README has a tsx example");
  return example;
}

/** Type-checks `source` as an app's src/example.tsx against the package; returns tsc's result. */
function typeCheck(source) {
  const dir = app();
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src", "example.tsx"), source);
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        lib: ["ES2022", "DOM", "DOM.Iterable"],
        module: "ESNext",
        moduleResolution: "Bundler",
        jsx: "react-jsx",
        strict: true,
        noEmit: true,
        noUnusedLocals: true,
        preserveSymlinks: true,
        types: [],
      },
      include: ["src"],
    }),
  );
  return spawnSync(tsc, ["--noEmit", "-p", dir], { encoding: "utf8" });
}

test("the README's React example type-checks against the built package", () => {
  const example = readmeExample();
  const lines = example.trim().split("\n").filter((line) => line.trim() !== "");
  assert.ok(lines.length <= 10, `the integration takes ${lines.length} lines, not ten`);
  const checked = typeCheck(example);
  assert.equal(checked.status, 0, `tsc --noEmit on the README example:\n${checked.stdout}${checked.stderr}`);

  // The same check fails on a misuse, so it does see the package's types (not `any`).
  const misuse = typeCheck(example.replace("live.duration.toFixed(0)", "live.duration.toUpperCase()"));
  assert.notEqual(misuse.status, 0, "a misuse of the hook's values must not type-check");
  assert.match(misuse.stdout, /toUpperCase/);
});

// ---- a plain <script type="module"> page, on its own origin, recording against the server ----

const PAGE = `<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>@livekeep/recorder in a plain page</title>
<script type="module">
  import { createLiveRecorder, pickMimeType } from "./recorder/index.js";
  window.recordLive = async ({ apiBase, token, title, ms }) => {
    const errors = [];
    const states = [];
    const mime = await pickMimeType();
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    const rec = await createLiveRecorder({
      apiBase, token, title,
      onError: (e) => errors.push(e),
      onStateChange: (s) => states.push(s),
    });
    await rec.start(stream);
    await new Promise((r) => setTimeout(r, ms));
    const videoData = await rec.stop();
    stream.getTracks().forEach((t) => t.stop());
    return { mime, videoData, errors, states, uploaded: rec.uploadedBytes, recorded: rec.bytesRecorded };
  };
  document.body.dataset.ready = "yes";
</script>`;

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html", ".json": "application/json" };

/** Serves PAGE at / and the package at /recorder/ on 127.0.0.1, counting requests per path. */
async function servePage() {
  const hits = new Map();
  const http = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
      return;
    }
    const file = normalize(path).startsWith("/recorder/") && join(pkgDir, normalize(path).slice("/recorder/".length));
    if (file && file.startsWith(pkgDir) && existsSync(file)) {
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      res.end(readFileSync(file));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  return { http, hits, origin: `http://127.0.0.1:${http.address().port}` };
}

describe("a plain page", () => {
  // The page's origin is known once it listens; the server (started next) must allow it.
  const serverOptions = { args: [] };
  let page;
  before(async () => {
    page = await servePage();
    serverOptions.args.push("--cors-origin", page.origin);
  });
  const env = serverAndBrowser(serverOptions);
  after(() => new Promise((resolve) => (page ? page.http.close(resolve) : resolve())));

  test("a plain <script type=module> page records a live with the package against the real server", async () => {
    const { status, body } = await env.server.api("POST", "/api/auth/register", {
      json: { username: uniqueName("pkg"), password: "correct horse battery" },
    });
    assert.equal(status, 201);
    const context = await env.browser.newContext();
    const tab = await context.newPage();
    const problems = [];
    const refused = [];
    tab.on("pageerror", (e) => problems.push(e.message));
    // Chromium logs each 4xx/5xx answer as a console error without its URL: `refused` has them.
    tab.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && problems.push(m.text()));
    tab.on("response", (r) => {
      if (r.status() >= 400) refused.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`);
    });
    await tab.goto(page.origin);
    await tab.waitForFunction(() => document.body.dataset.ready === "yes");

    const result = await tab.evaluate((args) => window.recordLive(args), {
      apiBase: env.server.url,
      token: body.token,
      title: "Plain page live",
      ms: 2_500,
    });
    await context.close();

    assert.match(result.mime, /^video\/(webm|mp4)/);
    assert.deepEqual(result.states, ["starting", "recording", "stopping", "saved"]);
    assert.deepEqual(result.errors.filter((e) => e.fatal), [], "no fatal error");
    assert.deepEqual(result.errors, [], "no warning either (the poster went through)");
    assert.deepEqual(refused, [], "no request was refused");
    assert.ok(result.recorded > 10_000, `only ${result.recorded} bytes recorded`);
    assert.equal(result.uploaded, result.recorded, "every byte acknowledged");
    assert.equal(result.videoData.size, result.recorded);
    assert.equal(page.hits.get("/recorder/recorder_wasm_bg.wasm"), 1, "the wasm module is fetched once");
    assert.deepEqual(problems, [], "the page logged no error");

    const { status: postStatus, body: post } = await env.server.api("GET", `/api/posts/${result.videoData.live_id}/`);
    assert.equal(postStatus, 200);
    assert.equal(post.live_status, "ended");
    assert.equal(post.content, "Plain page live");
    assert.equal(post.media_files.length, 1);
    assert.equal(post.media_files[0].original_sha256, result.videoData.sha256, "the server holds the recorder's bytes");
    assert.match(post.media_files[0].poster_url ?? "", /^\/media\/\d+\/poster$/, "the recorder's poster is on the Media");
  });
});

// ---- webpack 5, configured only as its documentation says for an app: entry and output ----

/** Bundles `source` (an app's src/index.js) with webpack 5 in production mode; resolves to the output folder. */
function bundleWithWebpack(dir, source) {
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(join(dir, "src", "index.js"), source);
  const out = join(dir, "dist");
  return new Promise((resolve, reject) =>
    webpack(
      {
        mode: "production",
        context: dir,
        entry: "./src/index.js",
        output: { path: out, filename: "main.js" },
      },
      (error, stats) => {
        if (error) return reject(error);
        if (stats.hasErrors()) return reject(new Error(stats.toString({ all: false, errors: true })));
        resolve(out);
      },
    ),
  );
}

/** Serves a folder on 127.0.0.1 (index.html at /). */
async function serveDir(dir) {
  const http = createServer((req, res) => {
    const path = normalize(new URL(req.url, "http://x").pathname);
    const file = join(dir, path === "/" ? "index.html" : path);
    if (file.startsWith(dir) && existsSync(file)) {
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(readFileSync(file));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  return { http, origin: `http://127.0.0.1:${http.address().port}` };
}

test("a webpack 5 app bundles the package with no wasm configuration and the module runs in Chromium", async () => {
  const dir = app();
  const out = await bundleWithWebpack(
    dir,
    `import { pickMimeType } from "@livekeep/recorder";
     window.pickedMime = pickMimeType();`,
  );
  const emitted = readdirSync(out);
  assert.ok(emitted.some((f) => f.endsWith(".wasm")), `webpack emitted the wasm module: ${emitted.join(" ")}`);
  writeFileSync(join(out, "index.html"), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script src="main.js"></script>');
  const site = await serveDir(out);
  const browser = await launchBrowser();
  try {
    const tab = await browser.newPage();
    const problems = [];
    tab.on("pageerror", (e) => problems.push(e.message));
    await tab.goto(site.origin);
    const mime = await tab.evaluate(() => window.pickedMime);
    assert.match(mime ?? "", /^video\/(webm|mp4)/, "the wasm module loaded and chose a format");
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    await new Promise((r) => site.http.close(r));
  }
});
