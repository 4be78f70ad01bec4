// Browser memory while recording with the fake camera: the real page (www/dist served by the
// livekeep server, recorder-wasm uploading with tus) against the original design, a page that
// keeps every MediaRecorder blob in an array. Both record at once, each in its own Chromium,
// and are sampled every --interval seconds: JS heap after a forced GC (CDP Performance
// metrics), wasm memory (every WebAssembly.Memory in the page, found with Runtime.queryObjects),
// and the resident memory of the whole Chromium process tree (blob bytes live in the browser
// process, not in the page's JS heap). Prints a markdown section; progress goes to stderr.
//
//   node bench/browser-memory.mjs [--duration 180] [--interval 30] [--server-bin target/release/livekeep]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "../tests/node_modules/playwright-core/index.mjs";

const root = resolve(import.meta.dirname, "..");
const options = { duration: 180, interval: 30, serverBin: join(root, "target/release/livekeep"), chromium: "/usr/bin/chromium" };
for (let i = 2; i < process.argv.length; i += 2) {
  const key = process.argv[i].replace(/^--/, "").replace(/-(\w)/g, (_, c) => c.toUpperCase());
  if (!(key in options)) throw new Error(`unknown flag ${process.argv[i]}`);
  options[key] = typeof options[key] === "number" ? Number(process.argv[i + 1]) : process.argv[i + 1];
}

const chromiumArgs = [
  "--no-sandbox",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--enable-precise-memory-info",
  "--js-flags=--expose-gc",
  // Two headless browsers share the machine: neither page may be throttled as "hidden".
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
];

// The original design: MediaRecorder with a 1 s timeslice, every blob pushed into an array,
// uploaded only at the end. Same format choice as recorder-wasm (VP9 first).
const baselinePage = `<!doctype html><meta charset="utf-8"><title>baseline</title><script>
window.chunks = [];
window.started = (async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const mimeType = ["video/webm;codecs=vp9,opus", "video/webm;codecs=vp8,opus", "video/webm"].find((m) => MediaRecorder.isTypeSupported(m));
  const recorder = new MediaRecorder(stream, { mimeType });
  recorder.ondataavailable = (event) => { if (event.data.size > 0) window.chunks.push(event.data); };
  recorder.start(1000);
  window.recorder = recorder;
})();
</script>`;

const log = (...args) => console.error("browser-memory:", ...args);
const mib = (bytes) => bytes / (1 << 20);

function startServer(dataDir) {
  const child = spawn(options.serverBin, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--www-dir", join(root, "www/dist")], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  return new Promise((resolveUrl, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("the server did not start")), 30_000);
    child.stdout.on("data", (d) => {
      out += d.toString();
      const match = out.match(/listening on (http:\/\/\S+?)\/?\s/);
      if (match) {
        clearTimeout(timer);
        resolveUrl({ child, url: match[1] });
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited with ${code}`)));
  });
}

/**
 * Proportional set size of `pid` and all its descendants, from /proc: PSS splits shared pages
 * between the processes that map them, so the sum does not count Chromium's shared code N times.
 */
function treePss(pid) {
  const children = new Map();
  const pids = new Set();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ppid = Number(fields[1]);
      pids.add(Number(entry));
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(entry));
    } catch {
      // The process ended between readdir and read.
    }
  }
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    if (pids.has(p)) total += pss(p);
    stack.push(...(children.get(p) ?? []));
  }
  return total;
}

function pss(pid) {
  try {
    const kib = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+) kB/m);
    return kib ? Number(kib[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function sample(subject, t) {
  const { page, cdp, pid } = subject;
  await page.evaluate(() => globalThis.gc?.());
  const { metrics } = await cdp.send("Performance.getMetrics");
  const heap = metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? NaN;
  const proto = await cdp.send("Runtime.evaluate", { expression: "WebAssembly.Memory.prototype", objectGroup: "bench" });
  const { objects } = await cdp.send("Runtime.queryObjects", { prototypeObjectId: proto.result.objectId, objectGroup: "bench" });
  const wasm = await cdp.send("Runtime.callFunctionOn", {
    objectId: objects.objectId,
    functionDeclaration: "function () { return this.reduce((sum, m) => sum + m.buffer.byteLength, 0); }",
    returnByValue: true,
  });
  await cdp.send("Runtime.releaseObjectGroup", { objectGroup: "bench" });
  const held = await page.evaluate(() => (window.chunks ? window.chunks.reduce((s, b) => s + b.size, 0) : null));
  const row = { t, heap, wasm: wasm.result.value ?? 0, pss: treePss(pid), held };
  subject.samples.push(row);
  log(`${subject.name} t=${t}s heap ${mib(row.heap).toFixed(1)} MiB wasm ${mib(row.wasm).toFixed(1)} MiB Chromium PSS ${mib(row.pss).toFixed(0)} MiB${held === null ? "" : ` blobs held ${mib(held).toFixed(1)} MiB`}`);
}

/** Least-squares slope of `key` against time, in MiB per minute. */
function slope(samples, key) {
  const xs = samples.map((s) => s.t / 60);
  const ys = samples.map((s) => mib(s[key]));
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** The Chromium browser process (no `--type=`) started with `userDataDir`. */
function browserPid(userDataDir) {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (args.includes(`--user-data-dir=${userDataDir}`) && !args.some((a) => a.startsWith("--type="))) return Number(entry);
    } catch {
      // The process ended between readdir and read.
    }
  }
  throw new Error(`no Chromium process for ${userDataDir}`);
}

async function open(name, prepare) {
  // A profile of our own, so its browser process (and the tree below it) can be found in /proc.
  const userDataDir = mkdtempSync(join(tmpdir(), `livekeep-bench-${name}-`));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: options.chromium,
    args: chromiumArgs,
    permissions: ["camera", "microphone"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await prepare(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  return { name, context, userDataDir, pid: browserPid(userDataDir), page, cdp, samples: [] };
}

const dataDir = mkdtempSync(join(tmpdir(), "livekeep-bench-browser-"));
const server = await startServer(dataDir);
let subjects = [];
try {
  const ours = open("livekeep", async (page) => {
    await page.goto(server.url + "/");
    await page.locator('input[name="username"]').fill(`mem_${process.pid}`);
    await page.locator('input[name="password"]').fill("correct horse battery");
    await page.locator('form.auth button[type="submit"]').click();
    await page.getByTestId("whoami").waitFor();
    await page.getByLabel(/Titre du live|Live title/).fill("Memory benchmark");
    await page.getByRole("button", { name: /Passer en direct|Go live/ }).click();
    await page.getByTestId("clock").waitFor();
  });
  const baseline = open("baseline", async (page) => {
    // Same origin as the real page (a secure context for getUserMedia), served by the route.
    await page.route(server.url + "/bench-baseline.html", (route) => route.fulfill({ contentType: "text/html", body: baselinePage }));
    await page.goto(server.url + "/bench-baseline.html");
    await page.evaluate(() => window.started);
  });
  subjects = await Promise.all([ours, baseline]);
  log(`recording ${options.duration} s, sampling every ${options.interval} s`);
  const began = Date.now();
  for (let t = 0; t <= options.duration; t += options.interval) {
    const wait = began + t * 1000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await Promise.all(subjects.map((s) => sample(s, t)));
  }
} finally {
  await Promise.all(subjects.map((s) => s.context.close().catch(() => {})));
  for (const s of subjects) rmSync(s.userDataDir, { recursive: true, force: true });
  server.child.kill("SIGTERM");
  rmSync(dataDir, { recursive: true, force: true });
}

const [ours, baseline] = subjects;
for (const s of subjects) for (const row of s.samples) row.retained = row.heap + row.wasm + (row.held ?? 0);
const series = (s, key) => s.samples.map((row) => mib(row[key]).toFixed(1)).join(" → ");
console.log("## Browser memory while recording\n");
console.log(
  `Two headless Chromium (Debian's, fake camera) record for ${options.duration} s at once: the real page ` +
    "(`www/dist` from the server: sign up, *Go live*; recorder-wasm uploads each 1 s chunk with tus) and the " +
    "baseline, the original design: a tiny page whose MediaRecorder (same format, 1 s timeslice) pushes every " +
    `blob into an array. Every ${options.interval} s: JS heap used after a forced GC (CDP \`Performance.getMetrics\`), ` +
    "wasm memory (sum of every `WebAssembly.Memory` in the page, via `Runtime.queryObjects`), and the resident " +
    "proportional memory (PSS) of the whole Chromium process tree (Blob bytes live in the browser process, outside " +
    "the page's heap). *Retained by the page* is JS heap + wasm memory, plus, for the baseline, the bytes of the blobs " +
    "its array holds. " +
    "Slopes are least-squares fits in MiB per minute; one run (the figure is a trend over time, not a single value). " +
    `Reproduce: \`node bench/browser-memory.mjs --duration ${options.duration} --interval ${options.interval}\`.\n`,
);
console.log("| series (MiB, every " + options.interval + " s) | livekeep page | baseline (blobs in an array) |");
console.log("|---|---|---|");
console.log(`| retained by the page | ${series(ours, "retained")} | ${series(baseline, "retained")} |`);
console.log(`| JS heap used | ${series(ours, "heap")} | ${series(baseline, "heap")} |`);
console.log(`| wasm memory | ${series(ours, "wasm")} | ${series(baseline, "wasm")} |`);
console.log(`| Chromium tree PSS | ${series(ours, "pss")} | ${series(baseline, "pss")} |`);
console.log(`| blob bytes held by the page | — | ${series(baseline, "held")} |`);
console.log("");
console.log("| slope (MiB/min) | livekeep page | baseline | ratio livekeep / baseline |");
console.log("|---|---|---|---|");
for (const [label, key] of [["retained by the page", "retained"], ["JS heap", "heap"], ["wasm memory", "wasm"], ["Chromium tree PSS", "pss"]]) {
  const a = slope(ours.samples, key);
  const b = slope(baseline.samples, key);
  // A ratio to a flat baseline says nothing: only compare against a baseline that grows.
  const ratio = Number.isFinite(a) && Number.isFinite(b) && Math.abs(b) >= 0.05 ? `${(a / b).toFixed(2)}×` : "—";
  console.log(`| ${label} | ${Number.isFinite(a) ? a.toFixed(2) : "—"} | ${b.toFixed(2)} | ${ratio} |`);
}
console.log("");
