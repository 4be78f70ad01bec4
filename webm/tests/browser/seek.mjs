// Plays recordings in headless Chromium the way a viewer does: load, read the duration when
// metadata arrives, seek to 90 %, play. Counts the bytes the server sends for each step.
//
// Run by the Rust test `browser::finalized_mp4s_play_and_seek_in_chromium`, which makes the files:
//   NODE_PATH=tests/node_modules node webm/tests/browser/seek.mjs DIR FILE...
// Prints one line per file of tab-separated key=value pairs: file, duration (at loadedmetadata),
// metadata_sent (bytes the server sent until then), playing_sent (from the seek to the `playing`
// event), seek_sent (to half a second of playback, or half-way to the end), requests, target, landed, played, and error
// last when something failed. Exits non-zero only when the browser itself could not run.

import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { join, extname } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const [dir, ...files] = process.argv.slice(2);
if (!dir || files.length === 0) {
  console.error('usage: seek.mjs DIR FILE...');
  process.exit(2);
}

const CHUNK = 256 << 10;
let sent = 0;
let requests = [];
// Seeking needs Range requests, which `python3 -m http.server` does not answer.
const server = createServer((req, res) => {
  if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><video id=v muted preload=metadata></video>');
    return;
  }
  const path = join(dir, decodeURIComponent(req.url.slice(1)));
  let size;
  try {
    size = statSync(path).size;
  } catch {
    res.writeHead(404);
    res.end();
    return;
  }
  const range = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '');
  const start = range ? Number(range[1]) : 0;
  const asked = range && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
  // A range is answered with at most CHUNK bytes (Content-Range says so; the browser asks
  // again for more), so the bytes sent are the bytes the browser wanted, give or take one
  // chunk per request, instead of whatever the loopback socket buffers swallow.
  const end = range ? Math.min(asked, start + CHUNK - 1) : asked;
  requests.push(`${start}-${range && range[2] ? end : ''}`);
  res.writeHead(range ? 206 : 200, {
    'content-type': extname(path) === '.webm' ? 'video/webm' : 'video/mp4',
    'accept-ranges': 'bytes',
    'content-length': end - start + 1,
    ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
  });
  // Counted as handed to the socket: what the server sent, whether or not the browser read it.
  const stream = createReadStream(path, { start, end, highWaterMark: 64 << 10 });
  stream.on('data', (chunk) => { sent += chunk.length; });
  stream.pipe(res);
  res.on('close', () => stream.destroy());
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
});
try {
  for (const file of files) {
    // A fresh context per file: no cached bytes from the previous one.
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(base);
    // Called by the page at the `playing` event: the counters at that moment.
    let atPlaying = null;
    await page.exposeFunction('markPlaying', () => {
      atPlaying = sent;
    });
    sent = 0;
    requests = [];
    const result = { file };
    try {
      const metadata = await page.evaluate(async (src) => {
        const v = document.getElementById('v');
        v.src = src;
        await new Promise((resolve, reject) => {
          v.onloadedmetadata = resolve;
          v.onerror = () => reject(new Error(`media error ${v.error?.code}: ${v.error?.message}`));
        });
        return { duration: Number.isFinite(v.duration) ? v.duration : String(v.duration) };
      }, base + file);
      Object.assign(result, metadata);
      // Let the metadata fetch settle before the seek's bytes are counted.
      await page.waitForTimeout(500);
      result.metadata_sent = sent;
      const before = sent;
      const seekDone = await page.evaluate(async () => {
        const v = document.getElementById('v');
        if (!Number.isFinite(v.duration)) return { error: 'no finite duration' };
        const target = v.duration * 0.9;
        v.currentTime = target;
        await new Promise((resolve, reject) => {
          v.onseeked = resolve;
          v.onerror = () => reject(new Error(`media error ${v.error?.code}: ${v.error?.message}`));
        });
        const landed = v.currentTime;
        const playing = new Promise((resolve) => {
          v.onplaying = () => {
            window.markPlaying();
            resolve();
          };
        });
        await v.play();
        await playing;
        // Playing: the clock moves half a second past the seek target (or half-way to the end).
        const enough = Math.min(0.5, (v.duration - landed) / 2);
        await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`stuck at ${v.currentTime}`)), 20000);
          v.ontimeupdate = () => {
            if (v.currentTime > landed + enough) {
              clearTimeout(timer);
              resolve();
            }
          };
        });
        v.pause();
        return { target, landed, played: v.currentTime - landed };
      });
      Object.assign(result, seekDone);
      // The bytes up to the moment playback resumed: what the seek needed.
      if (atPlaying !== null) result.playing_sent = atPlaying - before;
      result.seek_sent = sent - before;
    } catch (e) {
      result.error = String(e);
    }
    result.requests = requests.length;
    const { error, ...fields } = result;
    const line = Object.entries(fields).map(([key, value]) => `${key}=${value}`);
    if (error) line.push(`error=${error.replace(/\s+/g, ' ')}`);
    console.log(line.join('\t'));
    await context.close();
  }
} finally {
  await browser.close();
  server.close();
}
