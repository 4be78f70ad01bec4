// Issue 6's package: recorder-wasm/pkg (built by scripts/build.sh) used the way an app uses
// @livekeep/recorder — its manifest, an ESM import through its exports map, the README's
// React examples type-checked against its types, a live recorded from a plain
// <script type="module"> page in Chromium against the real server, and a webpack 5 bundle.
// Issue 13's: the packed tarball installed into a fresh Vite + React app and built, and that
// app in Chromium: unmounting the hook's component releases the camera and leaves the live to
// the journal; a provider keeps the live across the app's navigation.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { gzipSync } from "node:zlib";
import webpack from "webpack";
import { eventually, launchBrowser, root, serverAndBrowser, uniqueName } from "./harness.mjs";

const pkgDir = join(root, "recorder-wasm", "pkg");
const wwwModules = join(root, "www", "node_modules");
const tsc = join(wwwModules, ".bin", "tsc");
const manifest = () => JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));

/** A throwaway app folder whose node_modules holds the package (a symlink, or a copy as an
 * install makes it) and React (symlinks). */
function makeApp({ copyPackage = false } = {}) {
  const app = mkdtempSync(join(tmpdir(), "livekeep-app-"));
  const link = (target, name) => {
    mkdirSync(join(app, "node_modules", name, ".."), { recursive: true });
    symlinkSync(target, join(app, "node_modules", name), "dir");
  };
  if (copyPackage) {
    cpSync(pkgDir, join(app, "node_modules", "@livekeep", "recorder"), { recursive: true });
  } else {
    link(pkgDir, "@livekeep/recorder");
  }
  link(join(wwwModules, "react"), "react");
  link(join(wwwModules, "@types", "react"), "@types/react");
  link(join(wwwModules, "csstype"), "csstype");
  return app;
}

const apps = [];
function app(options) {
  const dir = makeApp(options);
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
  assert.deepEqual(pkg.exports["."], { types: "./index.d.ts", import: "./index.js", default: "./index.js" });
  assert.deepEqual(pkg.exports["./react"], { types: "./react.d.ts", import: "./react.js", default: "./react.js" });
  for (const entry of [".", "./react"]) {
    // Conditions match in order: types first to be picked by TypeScript, default last as the fallback.
    assert.deepEqual(Object.keys(pkg.exports[entry]), ["types", "import", "default"], `${entry}'s conditions in order`);
  }
  const reactEntry = readFileSync(join(pkgDir, "react.js"), "utf8");
  assert.ok(reactEntry.startsWith('"use client";\n'), "the React entry's first statement is \"use client\" (Next.js app router)");
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
    let loadFailure;
    try { await recorder.load(new Uint8Array([0, 97, 115, 109])); } catch (e) { loadFailure = { code: e.code, cause: e.cause instanceof Error }; }
    await recorder.load(wasm); // a failed load does not stick: the next call loads
    await recorder.load(); // a second call reuses the first load (no fetch, which Node cannot do here)
    let code;
    try { new recorder.LiveRecorder({}); } catch (e) { code = e.code; }
    console.log(JSON.stringify({ core: Object.keys(recorder).sort(), react: Object.keys(react).sort(), code, loadFailure }));
  `;
  // --preserve-symlinks: the package resolves "react" from the app's node_modules, as installed.
  const out = execFileSync(process.execPath, ["--preserve-symlinks", "--input-type=module", "-e", script], {
    cwd: dir,
    encoding: "utf8",
  });
  const seen = JSON.parse(out);
  assert.deepEqual(seen.core, ["LiveRecorder", "createLiveRecorder", "load", "pickMimeType", "resumePending"]);
  assert.deepEqual(seen.react, ["LiveRecorderProvider", "resumePendingRecordings", "useLiveRecorder", "useLiveRecorderContext"]);
  assert.equal(seen.code, "invalid_options", "the wasm checked the options and threw a coded Error");
  assert.deepEqual(seen.loadFailure, { code: "load_failed", cause: true }, "a module that cannot load is a coded error");
});

/** The README's ```tsx blocks; the first is the ten-line integration. */
function readmeExamples() {
  const readme = readFileSync(join(pkgDir, "README.md"), "utf8");
  const examples = [...readme.matchAll(/```tsx\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(examples.length >= 2, "the README has its tsx examples (ten lines, and the provider)");
  return examples;
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

test("the README's React examples type-check against the built package", () => {
  const [example, ...others] = readmeExamples();
  const lines = example.trim().split("\n").filter((line) => line.trim() !== "");
  assert.ok(lines.length <= 10, `the integration takes ${lines.length} lines, not ten`);
  const checked = typeCheck(example);
  assert.equal(checked.status, 0, `tsc --noEmit on the README example:\n${checked.stdout}${checked.stderr}`);

  // The same check fails on a misuse, so it does see the package's types (not `any`).
  const misuse = typeCheck(example.replace("live.duration.toFixed(0)", "live.duration.toUpperCase()"));
  assert.notEqual(misuse.status, 0, "a misuse of the hook's values must not type-check");
  assert.match(misuse.stdout, /toUpperCase/);

  for (const other of others) {
    const result = typeCheck(other);
    assert.equal(result.status, 0, `tsc --noEmit on a README example:\n${result.stdout}${result.stderr}\n${other}`);
  }
});

test("error codes are typed as the documented union", () => {
  const source = `
    import { useLiveRecorder, type RecorderFailure } from "@livekeep/recorder/react";
    import type { RecorderErrorCode, RecorderErrorInfo } from "@livekeep/recorder";
    const known: RecorderErrorCode[] = ["unauthenticated", "http_503", "load_failed", "internal"];
    export function Show({ failure, info }: { failure: RecorderFailure; info: RecorderErrorInfo }) {
      const live = useLiveRecorder({ getToken: async () => "t" });
      const code: RecorderErrorCode | undefined = live.error?.code ?? info.code;
      return <p>{known.includes(failure.code) ? code : failure.message}</p>;
    }
  `;
  const checked = typeCheck(source);
  assert.equal(checked.status, 0, `${checked.stdout}${checked.stderr}`);
  for (const bad of ['"generic"', '"http_oops"']) {
    const result = typeCheck(source.replace('"internal"]', `"internal", ${bad}]`));
    assert.notEqual(result.status, 0, `${bad} is not a RecorderErrorCode`);
    assert.match(result.stdout, /RecorderErrorCode/);
  }
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
        resolve({ out, warnings: stats.toJson({ all: false, warnings: true }).warnings.map((w) => w.message) });
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
  // A copy, as npm installs it: webpack resolves a symlinked package's imports (react) from its real path.
  const dir = app({ copyPackage: true });
  const { out, warnings } = await bundleWithWebpack(
    dir,
    `import { pickMimeType } from "@livekeep/recorder";
     import { useLiveRecorder } from "@livekeep/recorder/react";
     window.pickedMime = pickMimeType();
     window.hook = useLiveRecorder;`,
  );
  assert.deepEqual(warnings.filter((w) => /use client|directive/i.test(w)), [], "no warning about the React entry's directive");
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

// ---- the packed tarball in a fresh Vite + React app, built, then run in Chromium ----

/** The version of @vitejs/plugin-react that create-vite's React template would install for Vite 8. */
const VITE_PLUGIN_REACT = "6.3.1";

/** The app: one component that owns a live (`own`), or a provider around two "pages" that the
 * app switches between as a router would (`feed`, `watch`), or a component whose `getToken` is
 * whatever `window.app.getToken` is at its last render (`tokens`); each exposes its controls on
 * `window.app` for the test. */
const VITE_APP = `
import { useState } from "react";
import { createRoot } from "react-dom/client";
import { pickMimeType } from "@livekeep/recorder";
import {
  LiveRecorderProvider,
  resumePendingRecordings,
  useLiveRecorder,
  useLiveRecorderContext,
} from "@livekeep/recorder/react";

const query = new URLSearchParams(location.search);
const options = { token: query.get("token"), apiBase: query.get("api"), title: "Live from a Vite app" };
const app = (window.app = { marker: "livekeep-vite-app" });

function Expose({ name, controls }) {
  app[name] = controls;
  return <p id={name} data-state={controls.state}>{name}: {controls.state}</p>;
}

function OwnRecorder() {
  return <Expose name="own" controls={useLiveRecorder(options)} />;
}

function FeedPage() {
  return <Expose name="feed" controls={useLiveRecorderContext()} />;
}

function WatchPage() {
  return <Expose name="watch" controls={useLiveRecorderContext()} />;
}

function TokenRecorder() {
  const { apiBase, title } = options;
  return <Expose name="tokens" controls={useLiveRecorder({ apiBase, title, getToken: app.getToken })} />;
}

function Root() {
  const [view, setView] = useState({ mode: "none", page: "feed" });
  app.show = (next) => setView((current) => ({ ...current, ...next }));
  if (view.mode === "own") return <OwnRecorder />;
  if (view.mode === "tokens") return <TokenRecorder />;
  if (view.mode === "provider") {
    return (
      <LiveRecorderProvider {...options}>
        {view.page === "feed" ? <FeedPage /> : <WatchPage />}
      </LiveRecorderProvider>
    );
  }
  return <p id="empty">nothing mounted</p>;
}

app.camera = () => navigator.mediaDevices.getUserMedia({ video: true, audio: true });
app.resume = () => resumePendingRecordings(options.token, options.apiBase);
app.pickMimeType = pickMimeType;
createRoot(document.getElementById("root")).render(<Root />);
`;

/** npm-packs recorder-wasm/pkg into `dir`; returns the tarball's path and the files it holds. */
function packPackage(dir) {
  const [packed] = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", dir], { cwd: pkgDir, encoding: "utf8" }));
  return { tarball: join(dir, packed.filename), files: packed.files.map((f) => f.path) };
}

/** A fresh Vite + React app depending on `tarball`; `vite build` run in it. */
function buildViteApp(tarball) {
  const dir = mkdtempSync(join(tmpdir(), "livekeep-vite-app-"));
  apps.push(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({
      name: "livekeep-vite-app",
      private: true,
      type: "module",
      dependencies: {
        "@livekeep/recorder": `file:${tarball}`,
        react: `file:${join(wwwModules, "react")}`,
        "react-dom": `file:${join(wwwModules, "react-dom")}`,
      },
      devDependencies: { vite: `file:${join(wwwModules, "vite")}`, "@vitejs/plugin-react": VITE_PLUGIN_REACT },
    }),
  );
  writeFileSync(
    join(dir, "vite.config.js"),
    `import { defineConfig } from "vite";\nimport react from "@vitejs/plugin-react";\nexport default defineConfig({ plugins: [react()] });\n`,
  );
  writeFileSync(
    join(dir, "index.html"),
    '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body><div id="root"></div><script type="module" src="/src/main.jsx"></script></body></html>',
  );
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src", "main.jsx"), VITE_APP);
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts"], { cwd: dir, stdio: "pipe" });
  const build = spawnSync(join(dir, "node_modules", ".bin", "vite"), ["build"], { cwd: dir, encoding: "utf8" });
  return { dir, build, output: `${build.stdout}${build.stderr}` };
}

describe("a fresh Vite + React app with the packed package", () => {
  const built = {};
  const serverOptions = { args: [] };
  before(() => {
    const packDir = mkdtempSync(join(tmpdir(), "livekeep-pack-"));
    apps.push(packDir);
    Object.assign(built, packPackage(packDir));
    Object.assign(built, buildViteApp(built.tarball));
  });
  before(async () => {
    if (built.build.status !== 0) return; // the build test reports why
    built.site = await serveDir(join(built.dir, "dist"));
    serverOptions.args.push("--cors-origin", built.site.origin);
  });
  const env = serverAndBrowser(serverOptions);
  after(() => {
    // A page a failed test left open may hold a keep-alive connection.
    built.site?.http.closeAllConnections();
    return new Promise((resolve) => (built.site ? built.site.http.close(resolve) : resolve()));
  });

  test("vite build bundles both entries and emits the wasm module, without a warning", () => {
    for (const file of ["index.js", "react.js", "recorder_wasm.js", "recorder_wasm_bg.wasm", "package.json", "README.md"]) {
      assert.ok(built.files.includes(file), `the tarball holds ${file}: ${built.files.join(" ")}`);
    }
    assert.equal(built.build.status, 0, `vite build failed:\n${built.output}`);
    assert.doesNotMatch(built.output, /warn|MODULE_LEVEL_DIRECTIVE|use client/i, `vite build warned:\n${built.output}`);
    const installed = readFileSync(join(built.dir, "node_modules", "@livekeep", "recorder", "react.js"), "utf8");
    assert.ok(installed.startsWith('"use client";'), "the installed React entry keeps its directive");

    const assets = readdirSync(join(built.dir, "dist", "assets"));
    const wasm = assets.filter((f) => f.endsWith(".wasm"));
    assert.equal(wasm.length, 1, `one wasm asset: ${assets.join(" ")}`);
    assert.deepEqual(
      readFileSync(join(built.dir, "dist", "assets", wasm[0])),
      readFileSync(join(pkgDir, "recorder_wasm_bg.wasm")),
      "the emitted wasm is the package's module",
    );
    const js = assets.filter((f) => f.endsWith(".js")).map((f) => readFileSync(join(built.dir, "dist", "assets", f), "utf8")).join("\n");
    assert.ok(js.includes(wasm[0]), "the bundle loads the emitted wasm asset");
    assert.ok(js.includes("livekeep-vite-app"), "the app's own code is in the bundle");
    assert.ok(js.includes("could not be loaded"), "the core entry (@livekeep/recorder) is in the bundle");
    assert.ok(js.includes("<LiveRecorderProvider>"), "the React entry (@livekeep/recorder/react) is in the bundle");
  });

  /** Runs `body` on the built app, opened in a new context as a new user; closes the context. */
  async function withApp(body) {
    assert.ok(built.site, "the app was built");
    const opened = await openApp();
    try {
      await body(opened);
      assert.deepEqual(opened.problems, [], "the page threw nothing");
    } finally {
      await opened.context.close();
    }
  }

  /** Opens the built app signed in as a new user; returns the page and the token. */
  async function openApp() {
    const username = uniqueName("vite");
    const { status, body } = await env.server.api("POST", "/api/auth/register", {
      json: { username, password: "correct horse battery" },
    });
    assert.equal(status, 201);
    const context = await env.browser.newContext();
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(e.message));
    const query = new URLSearchParams({ token: body.token, api: env.server.url });
    await page.goto(`${built.site.origin}/?${query}`);
    await page.waitForSelector("#empty");
    return { page, context, token: body.token, username, problems };
  }

  test("unmounting the component that called useLiveRecorder releases the camera and leaves the live to the journal", () =>
    withApp(async ({ page }) => {
      await page.evaluate(() => window.app.show({ mode: "own" }));
      await page.waitForSelector("#own");
      await page.evaluate(async () => {
        window.stream = await window.app.camera();
        await window.app.own.start(window.stream);
      });
      // The hook's values reach the page with React's next render.
      const liveId = await eventually(() => page.evaluate(() => window.app.own.liveId), { what: "the live's id" });
      assert.ok(Number.isInteger(liveId), `the live started: ${liveId}`);
      await eventually(() => page.evaluate(() => window.app.own.uploadedBytes > 0), { what: "bytes on the server" });

      await page.evaluate(() => window.app.show({ mode: "none" }));
      await page.waitForSelector("#empty");
      const tracks = await page.evaluate(() => window.stream.getTracks().map((t) => `${t.kind}:${t.readyState}`));
      assert.deepEqual(tracks.sort(), ["audio:ended", "video:ended"], "every track of the camera is stopped");

      const { body: post } = await env.server.api("GET", `/api/posts/${liveId}/`);
      assert.equal(post.live_status, "live", "an unmount abandons the live: it is not stopped");
      assert.deepEqual(post.media_files, []);
      const journaled = await page.evaluate(async (id) => {
        const root = await navigator.storage.getDirectory();
        const journals = await root.getDirectoryHandle("livekeep-journal");
        const live = await journals.getDirectoryHandle(String(id));
        return JSON.parse(await (await (await live.getFileHandle("manifest.json")).getFile()).text());
      }, liveId);
      assert.equal(journaled.live_id, liveId, "the journal keeps the live");

      // The next visit's resumePendingRecordings finishes it (once the abandoned session let go).
      const resumed = await eventually(async () => {
        const done = await page.evaluate(() => window.app.resume());
        return done.length > 0 && done;
      }, { what: "resumePendingRecordings to finish the abandoned live" });
      assert.equal(resumed[0].live_id, liveId);
      const { body: ended } = await env.server.api("GET", `/api/posts/${liveId}/`);
      assert.equal(ended.live_status, "ended");
      assert.equal(ended.media_files.length, 1);
      assert.equal(ended.media_files[0].original_sha256, resumed[0].sha256);
    }));

  test("a live started under LiveRecorderProvider goes on while the app navigates, and its stop releases the camera", () =>
    withApp(async ({ page }) => {
      await page.evaluate(() => window.app.show({ mode: "provider", page: "feed" }));
      await page.waitForSelector("#feed");
      await page.evaluate(async () => {
        window.stream = await window.app.camera();
        await window.app.feed.start(window.stream);
      });
      const liveId = await eventually(() => page.evaluate(() => window.app.feed.liveId), { what: "the live's id" });
      const before = await eventually(() => page.evaluate(() => window.app.feed.uploadedBytes), { what: "bytes on the server" });

      await page.evaluate(() => window.app.show({ page: "watch" }));
      await page.waitForSelector("#watch");
      assert.equal(await page.$("#feed"), null, "the page that started the live is gone");
      const onWatch = await page.evaluate(() => ({
        state: window.app.watch.state,
        liveId: window.app.watch.liveId,
        tracks: window.stream.getTracks().map((t) => t.readyState),
    }));
    assert.deepEqual(onWatch, { state: "recording", liveId, tracks: ["live", "live"] }, "the same live, still recording");
    await eventually(() => page.evaluate((b) => window.app.watch.uploadedBytes > b, before), { what: "the upload to go on after navigating" });

    const videoData = await page.evaluate(() => window.app.watch.stop());
    assert.equal(videoData.live_id, liveId);
    await page.waitForSelector("#watch[data-state=saved]");
    const tracks = await page.evaluate(() => window.stream.getTracks().map((t) => t.readyState));
    assert.deepEqual(tracks, ["ended", "ended"], "a saved live releases the camera");
    const { body: post } = await env.server.api("GET", `/api/posts/${liveId}/`);
    assert.equal(post.live_status, "ended");
    assert.equal(post.media_files[0].original_sha256, videoData.sha256);
    assert.equal(post.media_files[0].title, "Vidéo du live - Live from a Vite app", "no recordingTitle: the server's default title");
    }));

  test("the hook passes getToken through and asks the latest one for a new token after a 401", () =>
    withApp(async ({ page, token, username }) => {
      await page.evaluate((first) => {
        window.app.calls = [];
        window.app.getToken = async () => {
          window.app.calls.push("first");
          return first;
        };
        window.app.show({ mode: "tokens" });
      }, token);
      await page.waitForSelector("#tokens");
      await page.evaluate(async () => {
        window.stream = await window.app.camera();
        await window.app.tokens.start(window.stream);
      });
      const liveId = await eventually(() => page.evaluate(() => window.app.tokens.liveId), { what: "the live's id" });
      await eventually(() => page.evaluate(() => window.app.tokens.uploadedBytes > 0), { what: "bytes on the server" });

      // The app renders with another getToken (one that signs in again), then the first token
      // stops being valid: the next request gets a 401 and the recorder asks the latest function.
      await page.evaluate(
        ({ api, username }) => {
          window.app.getToken = async () => {
            window.app.calls.push("second");
            const answer = await fetch(`${api}/api/auth/login`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ username, password: "correct horse battery" }),
            });
            return (await answer.json()).token;
          };
          window.app.show({ rendered: Date.now() });
        },
        { api: env.server.url, username },
      );
      const loggedOut = await env.server.api("POST", "/api/auth/logout", { token });
      assert.equal(loggedOut.status, 204, "the first token is revoked");
      const revokedAt = await page.evaluate(() => window.app.tokens.uploadedBytes);
      await eventually(() => page.evaluate((at) => window.app.tokens.uploadedBytes > at, revokedAt), {
        what: "the upload to go on with the new token",
      });

      const videoData = await page.evaluate(() => window.app.tokens.stop());
      const seen = await page.evaluate(() => ({ calls: window.app.calls, state: window.app.tokens.state, error: window.app.tokens.error }));
      assert.deepEqual(seen.calls, ["first", "second"], "the first function before the first request, the latest after the 401");
      assert.equal(seen.error, undefined);
      assert.equal(videoData.live_id, liveId, "the same recorder, never re-created");
      const { body: post } = await env.server.api("GET", `/api/posts/${liveId}/`);
      assert.equal(post.live_status, "ended");
      assert.equal(post.media_files[0].original_sha256, videoData.sha256, "every byte, across the new token");
    }));
});
