// The package's entry point: the wasm recorder with its loading handled here, once and
// lazily, so an app imports and calls without any wasm ceremony.
import init, { LiveRecorder } from "./recorder_wasm.js";
import type { InitInput, RecorderOptions, ResumeOptions, VideoData } from "./recorder_wasm.js";

export { LiveRecorder };
export type {
  InitInput,
  RecorderErrorInfo,
  RecorderOptions,
  RecorderProgress,
  RecorderState,
  ResumeOptions,
  VideoData,
} from "./recorder_wasm.js";

let ready: Promise<void> | undefined;

/**
 * Loads and instantiates the wasm module, once per page; every other function calls it, so
 * an app only needs it to call `new LiveRecorder()` itself. `wasm` overrides where the
 * module comes from (a URL, a `Response` or the bytes); by default it is fetched from
 * beside this file, which Vite, webpack 5 and a plain `<script type="module">` all serve.
 */
export function load(wasm?: InitInput | Promise<InitInput>): Promise<void> {
  ready ??= init(wasm === undefined ? undefined : { module_or_path: wasm }).then(
    () => undefined,
    (error: unknown) => {
      // A failed load (offline, wrong path) may be retried by the next call.
      ready = undefined;
      throw error;
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

/** The MIME type this browser would record, or `undefined` when it can record none. */
export async function pickMimeType(): Promise<string | undefined> {
  await load();
  return LiveRecorder.pickMimeType();
}
