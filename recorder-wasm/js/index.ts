// The package's entry point: the wasm recorder with its loading handled here, once and
// lazily, so an app imports and calls without any wasm ceremony.
import init, { LiveRecorder } from "./recorder_wasm.js";
import type { InitInput, RecorderOptions, ResumeOptions, VideoData } from "./recorder_wasm.js";

export { LiveRecorder };
export type {
  InitInput,
  RecorderErrorCode,
  RecorderErrorInfo,
  RecorderOptions,
  RecorderProgress,
  RecorderState,
  ResumeOptions,
  VideoData,
} from "./recorder_wasm.js";

let ready: Promise<void> | undefined;

/** The `load_failed` error: the module cannot report its own failure to load, so this file does. */
function loadFailed(cause: unknown): Error & { code: "load_failed" } {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const error = new Error(`the recorder's WebAssembly module could not be loaded: ${reason}`, { cause });
  return Object.assign(error, { code: "load_failed" as const });
}

/**
 * Loads and instantiates the wasm module, once per page; every other function calls it, so
 * an app only needs it to call `new LiveRecorder()` itself. `wasm` overrides where the
 * module comes from (a URL, a `Response` or the bytes); by default it is fetched from
 * beside this file, which Vite, webpack 5 and a plain `<script type="module">` all serve.
 * Rejects with an `Error` whose `code` is `load_failed` (its `cause` is the original error).
 */
export function load(wasm?: InitInput | Promise<InitInput>): Promise<void> {
  ready ??= init(wasm === undefined ? undefined : { module_or_path: wasm }).then(
    () => undefined,
    (error: unknown) => {
      // A failed load (offline, wrong path) may be retried by the next call.
      ready = undefined;
      throw loadFailed(error);
    },
  );
  return ready;
}

/** A recorder for one live, once the module is loaded; `start(stream)` begins the live. */
export async function createLiveRecorder(options: RecorderOptions): Promise<LiveRecorder> {
  await load();
  return new LiveRecorder(options);
}

/** Finishes the lives that a closed tab left in this browser's journal; resolves with the
 * `video_data` of each live it stopped. */
export async function resumePending(options: ResumeOptions): Promise<VideoData[]> {
  await load();
  return LiveRecorder.resumePending(options);
}

/** The MIME type this browser would record, or `undefined` when it can record none; with
 * `preferUniversalMp4`, as a recorder with that option would choose. */
export async function pickMimeType(options?: { preferUniversalMp4?: boolean }): Promise<string | undefined> {
  await load();
  return LiveRecorder.pickMimeType(options?.preferUniversalMp4);
}
