// Unit tests of the page's formatters (www/src/format.ts), compiled on the fly with the page's
// own TypeScript: `npm test` in www/, no build step and no browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import ts from "typescript";

const source = readFileSync(new URL("../src/format.ts", import.meta.url), "utf8");
const { outputText } = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
});
const { formatDuration, splitDateTime, formatBytes } = await import(
  `data:text/javascript;base64,${Buffer.from(outputText).toString("base64")}`
);

test("a duration under an hour reads minutes and seconds, two digits each", () => {
  assert.equal(formatDuration(0), "00:00");
  assert.equal(formatDuration(90), "01:30");
  assert.equal(formatDuration(5.97), "00:05", "whole seconds elapsed, as players count them");
  assert.equal(formatDuration(3599.9), "59:59");
});

test("a duration of an hour or more reads hours, then two-digit minutes and seconds", () => {
  assert.equal(formatDuration(3600), "1:00:00");
  assert.equal(formatDuration(3723), "1:02:03");
  assert.equal(formatDuration(36000 + 59), "10:00:59");
});

test("an unknown duration is shown as such, not as zero", () => {
  for (const unknown of [null, undefined, Number.NaN, Number.POSITIVE_INFINITY, -1]) {
    assert.equal(formatDuration(unknown), "--:--", String(unknown));
  }
});

test("the recording date is the viewer's day and 24-hour time", () => {
  const previous = process.env.TZ;
  process.env.TZ = "Europe/Paris";
  try {
    assert.deepEqual(splitDateTime("2025-07-23T13:30:00Z", "fr-FR"), { date: "23/07/2025", time: "15:30" });
    assert.deepEqual(splitDateTime("2025-07-23T13:30:00Z", "en-GB"), { date: "23/07/2025", time: "15:30" });
    // Past midnight is 00, never 24 (`hour12: false` alone gives "24:05" in some engines).
    assert.deepEqual(splitDateTime("2025-01-05T23:05:00Z", "fr-FR"), { date: "06/01/2025", time: "00:05" });
    assert.deepEqual(splitDateTime("2025-01-05T23:05:00Z", "en-GB"), { date: "06/01/2025", time: "00:05" });
    assert.deepEqual(splitDateTime("2025-01-05T23:05:00Z", "en-US"), { date: "01/06/2025", time: "00:05" });
  } finally {
    if (previous === undefined) delete process.env.TZ;
    else process.env.TZ = previous;
  }
});

test("sizes use the reader's units", () => {
  assert.equal(formatBytes(512, "en-GB"), "512 B");
  assert.equal(formatBytes(1536, "en-GB"), "1.5 KB");
  assert.equal(formatBytes(3 * 1024 * 1024, "fr-FR"), "3 Mo");
});
