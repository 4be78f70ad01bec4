//! The package's TypeScript types, which `api.rs` puts in the generated `recorder_wasm.d.ts`.
//! Plain text in a plain module, so that a native test checks `RecorderErrorCode` against
//! [`crate::error::RecorderError::CODES`].

/// The TypeScript declarations of the options, progress, error and `video_data` shapes.
pub const TS_TYPES: &str = r#"
export type RecorderState = "idle" | "starting" | "recording" | "paused" | "stopping" | "saved" | "failed";
export interface RecorderOptions {
  /** Bearer token for the API; give it or `getToken`, not both. */
  token?: string;
  /**
   * Gives a current Bearer token, instead of `token`: called before the first request and again
   * after a 401 (once per request), so a long live outlasts short-lived tokens. If it throws,
   * rejects, resolves to no string or takes over 20 s, the live goes on recording: `onError`
   * gets a non-fatal `token_unavailable` and the request is retried with backoff, calling it
   * again. `start()` rejects with `token_unavailable` if it cannot create the live; `stop()`
   * gives up after 3 failures in a row and the local journal keeps the recording for
   * `resumePending`. Only a 401 for the token it had just given is fatal (`unauthenticated`).
   */
  getToken?: () => Promise<string>;
  /** API origin; default "" = the page's origin, e.g. "http://127.0.0.1:8080". */
  apiBase?: string;
  /** The live's title (POST /api/posts/live/ {content}). */
  title?: string;
  /**
   * The recording's title (the Media's `title`), 1–500 characters. Leave it out and the server
   * titles it `Vidéo du live - <title>`, whether the live is stopped, resumed or interrupted.
   */
  recordingTitle?: string;
  /** An existing live to record into (both or neither); when absent, start() creates the live. */
  liveId?: number;
  uploadUrl?: string;
  /** Force a MIME type; else the first supported of LiveRecorder.pickMimeType()'s list. */
  mimeType?: string;
  /**
   * Record MP4 with H.264 + AAC, which every browser plays (Safari on iOS included), when
   * MediaRecorder can (`isTypeSupported`); else the default order. Not with `mimeType`.
   */
  preferUniversalMp4?: boolean;
  /** Milliseconds per chunk; default 1000. */
  timesliceMs?: number;
  /** Keyframe interval in ms (MediaRecorder videoKeyFrameIntervalDuration); default 1000. */
  keyframeIntervalMs?: number;
  videoBitsPerSecond?: number;
  /** Where unsent chunks are kept: "auto" (default: OPFS, else IndexedDB), "opfs", "indexeddb" or "off". */
  journal?: "auto" | "opfs" | "indexeddb" | "off";
  onStateChange?: (state: RecorderState) => void;
  onProgress?: (p: RecorderProgress) => void;
  /** Non-fatal errors (retrying, no journal, no poster: `fatal: false`) and the fatal one. */
  onError?: (e: RecorderErrorInfo) => void;
}
export interface RecorderProgress {
  state: RecorderState;
  /** Seconds, pauses excluded. */
  duration: number;
  bytesRecorded: number;
  uploadedBytes: number;
  bufferedBytes: number;
  chunks: number;
}
/**
 * The `code` of every error the package reports: as `Error.code` when a call throws or rejects,
 * in `onError`, and in the React hook's `error` and `warning`. See the README's table.
 */
export type RecorderErrorCode =
  | "invalid_options"
  | "no_supported_format"
  | "unsupported_mime_type"
  | "invalid_state"
  | "unauthenticated"
  | "token_unavailable"
  | `http_${number}`
  | "network"
  | "timeout"
  | "upload_protocol"
  | "recording_failed"
  | "closed"
  | "journal"
  | "poster"
  | "load_failed"
  | "internal";
/** An error as `onError` reports it. */
export interface RecorderErrorInfo { code: RecorderErrorCode; message: string; fatal: boolean }
export interface VideoData {
  upload_id: string;
  upload_url: string;
  duration: number;
  size: number;
  sha256: string;
  mime_type: string;
  /** Only when the app gave `recordingTitle`. */
  title?: string;
  live_id: number;
}
export interface ResumeOptions {
  /** Bearer token for the API; give it or `getToken`, not both. */
  token?: string;
  /** Gives a current Bearer token, instead of `token` (see `RecorderOptions.getToken`). */
  getToken?: () => Promise<string>;
  apiBase?: string;
  /** Called for each journal that could not be finished (it is kept for the next attempt). */
  onError?: (e: RecorderErrorInfo) => void;
}
"#;
