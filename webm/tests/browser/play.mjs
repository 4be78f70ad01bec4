// Manual check (not run by cargo test): Chromium plays finalized files with a finite
// duration and seeks to 70 % of it; the raw MediaRecorder files report Infinity.
//
//   cargo build --release -p livekeep-webm --bin finalize-bench
//   mkdir -p /tmp/play && for f in webm/tests/fixtures/chromium-*.webm; do
//     target/release/finalize-bench finalize "$f" /tmp/play/$(basename "$f" .webm).final.webm; done
//   NODE_PATH=/tmp/pw-rec/node_modules node webm/tests/browser/play.mjs /tmp/play/
//
// Exits non-zero when a `.final.webm` has no finite duration or a seek lands elsewhere.

import { createServer } from 'node:http';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const dir = process.argv[2] ?? '.';

// Seeking needs Range requests, which `python3 -m http.server` does not answer.
const server = createServer((req, res) => {
  if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<video id=v muted></video>');
    return;
  }
  let data;
  try {
    data = readFileSync(join(dir, decodeURIComponent(req.url)));
  } catch {
    res.writeHead(404);
    res.end();
    return;
  }
  const range = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '');
  const start = range ? Number(range[1]) : 0;
  const end = range && range[2] ? Number(range[2]) : data.length - 1;
  res.writeHead(range ? 206 : 200, {
    'content-type': 'video/webm',
    'accept-ranges': 'bytes',
    'content-length': end - start + 1,
    ...(range ? { 'content-range': `bytes ${start}-${end}/${data.length}` } : {}),
  });
  res.end(data.subarray(start, end + 1));
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://localhost:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
});
let failures = 0;
try {
  const page = await browser.newPage();
  await page.goto(base);
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.webm')).sort()) {
    const result = await page.evaluate(async (src) => {
      const v = document.getElementById('v');
      v.src = src;
      await new Promise((resolve, reject) => {
        v.onloadedmetadata = resolve;
        v.onerror = () => reject(new Error(`media error ${v.error?.code}`));
      });
      if (!Number.isFinite(v.duration)) return { duration: String(v.duration) };
      const target = v.duration * 0.7;
      v.currentTime = target;
      await new Promise((resolve) => { v.onseeked = resolve; });
      return { duration: v.duration, target, landed: v.currentTime };
    }, base + file).catch((e) => ({ error: String(e) }));
    const ok = !file.endsWith('.final.webm')
      || (typeof result.duration === 'number' && Math.abs(result.landed - result.target) < 0.1);
    if (!ok) failures += 1;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${file} ${JSON.stringify(result)}`);
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(failures ? 1 : 0);
