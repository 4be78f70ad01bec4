"use client";
// The React layer: one hook that runs a LiveRecorder and hands the page its state, the
// duration, the upload progress and the errors as plain values, and a provider that keeps
// one recorder for the whole app so that navigating never ends a live. The directive above
// marks this entry as client code for React Server Components (Next.js's app router).
import { createContext, createElement, useCallback, useContext, useEffect, useRef, useState } from "react";
import type { ReactElement, ReactNode } from "react";
import { createLiveRecorder, resumePending } from "./index.js";
import type {
  LiveRecorder,
  RecorderErrorCode,
  RecorderErrorInfo,
  RecorderOptions,
  RecorderProgress,
  RecorderState,
  VideoData,
} from "./index.js";

/** What `useLiveRecorder` needs: the recorder's options without the callbacks it owns. */
export interface UseLiveRecorderOptions
  extends Omit<RecorderOptions, "onStateChange" | "onProgress" | "onError" | "liveId" | "uploadUrl"> {
  /**
   * Stop the stream's tracks (camera light off) once the live is saved or failed, and when the
   * component that called the hook unmounts (the live is then left to the local journal);
   * default true.
   */
  releaseStream?: boolean;
  /** Also told every error, fatal or not (e.g. to log it). */
  onError?: (error: RecorderErrorInfo) => void;
}

/** A failure the page can show: a stable `code` (see the README) and a human message. */
export interface RecorderFailure {
  code: RecorderErrorCode;
  message: string;
}

/** What `useLiveRecorder` returns. */
export interface LiveRecorderControls {
  /** "idle" until `start`, then "starting", "recording", "paused", "stopping", "saved" or "failed". */
  state: RecorderState;
  /** Seconds recorded, pauses excluded; refreshed four times a second while recording. */
  duration: number;
  /** Bytes the browser recorded so far. */
  bytesRecorded: number;
  /** Bytes the server acknowledged so far (durably stored). */
  uploadedBytes: number;
  /** The last progress report, for finer detail (buffered bytes, chunks). */
  progress: RecorderProgress | undefined;
  /** The error that ended the live (`state` is "failed"); cleared by `start`. */
  error: RecorderFailure | undefined;
  /** The last non-fatal problem (retrying a network error or a failed getToken, no journal, no poster). */
  warning: RecorderErrorInfo | undefined;
  /** What the server confirmed at the stop, once `state` is "saved". */
  videoData: VideoData | undefined;
  /** The live (its Post id) once `start` created it, e.g. to follow its viewers and chat. */
  liveId: number | undefined;
  /** Creates the live and starts recording `stream`; rejects with the error also put in `error`. */
  start(stream: MediaStream, title?: string): Promise<void>;
  /** Pauses (the pause is not counted in the duration). */
  pause(): void;
  /** Resumes after `pause`. */
  resume(): void;
  /** Uploads the rest and stops the live; rejects with the error also put in `error`. */
  stop(): Promise<VideoData>;
  /** The duration right now, for a clock smoother than four updates a second. */
  getDuration(): number;
}

const DURATION_REFRESH_MS = 250;

/** The failure `error` stands for; anything thrown without a code is a bug: `internal`. */
function asFailure(error: unknown): RecorderFailure {
  const e = error as { code?: unknown; message?: unknown } | undefined;
  const message = typeof e?.message === "string" ? e.message : String(error);
  // Coded errors come from the recorder itself, whose codes are the union's.
  if (typeof e?.code === "string") return { code: e.code as RecorderErrorCode, message };
  return { code: "internal", message: `internal error: ${message}` };
}

function release(stream: MediaStream | undefined) {
  stream?.getTracks().forEach((track) => track.stop());
}

/**
 * Records a live with the wasm recorder: bytes go to the server while the live runs, a
 * closed tab leaves them in a local journal for `resumePendingRecordings`. The live belongs to
 * the component that calls this hook: unmounting it before `stop` abandons the live to that
 * journal and (unless `releaseStream: false`) turns the camera off. Call it where the app
 * stays mounted, or use `LiveRecorderProvider`, so that navigating does not end the live.
 */
export function useLiveRecorder(options: UseLiveRecorderOptions): LiveRecorderControls {
  const [state, setState] = useState<RecorderState>("idle");
  const [duration, setDuration] = useState(0);
  const [progress, setProgress] = useState<RecorderProgress | undefined>();
  const [error, setError] = useState<RecorderFailure | undefined>();
  const [warning, setWarning] = useState<RecorderErrorInfo | undefined>();
  const [videoData, setVideoData] = useState<VideoData | undefined>();
  const [liveId, setLiveId] = useState<number | undefined>();
  const recorder = useRef<LiveRecorder | undefined>(undefined);
  const stream = useRef<MediaStream | undefined>(undefined);
  const mounted = useRef(true);
  // The latest options, so the callbacks below stay stable across renders.
  const latest = useRef(options);
  latest.current = options;

  const getDuration = useCallback(() => recorder.current?.duration ?? 0, []);

  const finished = useCallback((rec: LiveRecorder) => {
    if (recorder.current !== rec) return;
    setDuration(rec.duration);
    if (latest.current.releaseStream !== false) release(stream.current);
  }, []);

  const start = useCallback(
    async (media: MediaStream, title?: string) => {
      recorder.current?.free();
      recorder.current = undefined;
      if (stream.current !== media && latest.current.releaseStream !== false) release(stream.current);
      stream.current = media;
      setError(undefined);
      setWarning(undefined);
      setVideoData(undefined);
      setLiveId(undefined);
      setProgress(undefined);
      setDuration(0);
      setState("starting");
      const { releaseStream: _release, onError, getToken, ...recorderOptions } = latest.current;
      let rec: LiveRecorder | undefined;
      try {
        rec = await createLiveRecorder({
          ...recorderOptions,
          // The latest getToken the page passed, without re-creating the recorder.
          getToken: getToken && (() => (latest.current.getToken ?? getToken)()),
          title: title ?? recorderOptions.title,
          onStateChange: (next) => {
            if (!rec || recorder.current !== rec) return;
            setState(next);
            if (next === "failed") finished(rec);
          },
          onProgress: (p) => {
            if (recorder.current !== rec) return;
            setProgress(p);
            // Everything sent again: a "retrying" warning is over.
            if (p.bufferedBytes === 0) setWarning((w) => (w && w.code !== "poster" ? undefined : w));
          },
          onError: (e) => {
            if (recorder.current === rec) {
              if (e.fatal) setError({ code: e.code, message: e.message });
              else setWarning(e);
            }
            onError?.(e);
          },
        });
        if (!mounted.current) {
          // Unmounted while the module loaded: the live never starts (the unmount released the camera).
          rec.free();
          throw Object.assign(new Error("the component unmounted before the live started"), { code: "closed" });
        }
        recorder.current = rec;
        await rec.start(media);
        if (recorder.current === rec) setLiveId(rec.liveId);
      } catch (e) {
        const failure = asFailure(e);
        if (!rec || recorder.current === rec) {
          setState("failed");
          setError(failure);
          if (latest.current.releaseStream !== false) release(media);
        }
        throw e;
      }
    },
    [finished],
  );

  const stop = useCallback(async (): Promise<VideoData> => {
    const rec = recorder.current;
    if (!rec) {
      const failure: RecorderFailure = { code: "invalid_state", message: "cannot stop: the live has not started" };
      setError(failure);
      throw Object.assign(new Error(failure.message), { code: failure.code });
    }
    try {
      const data = await rec.stop();
      if (recorder.current === rec) {
        setVideoData(data);
        finished(rec);
      }
      return data;
    } catch (e) {
      if (recorder.current === rec) setError(asFailure(e));
      throw e;
    }
  }, [finished]);

  // A pause or resume at the wrong moment (a double click) is a warning, not a crash.
  const act = useCallback((action: "pause" | "resume") => {
    try {
      recorder.current?.[action]();
    } catch (e) {
      setWarning({ ...asFailure(e), fatal: false });
    }
  }, []);
  const pause = useCallback(() => act("pause"), [act]);
  const resume = useCallback(() => act("resume"), [act]);

  useEffect(() => {
    if (state !== "recording" && state !== "paused") return;
    const timer = setInterval(() => setDuration(getDuration()), DURATION_REFRESH_MS);
    return () => clearInterval(timer);
  }, [state, getDuration]);

  // Unmounting before the stop abandons the live (the journal keeps it for resumePending)
  // and releases the camera: nothing is left recording, nothing left lit.
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
      recorder.current?.free();
      recorder.current = undefined;
      if (latest.current.releaseStream !== false) release(stream.current);
      stream.current = undefined;
    };
  }, []);

  return {
    state,
    duration,
    bytesRecorded: progress?.bytesRecorded ?? 0,
    uploadedBytes: progress?.uploadedBytes ?? 0,
    progress,
    error,
    warning,
    videoData,
    liveId,
    start,
    pause,
    resume,
    stop,
    getDuration,
  };
}

const LiveRecorderContext = createContext<LiveRecorderControls | undefined>(undefined);

/** `LiveRecorderProvider`'s props: the options of `useLiveRecorder`, and the app inside. */
export interface LiveRecorderProviderProps extends UseLiveRecorderOptions {
  children?: ReactNode;
}

/**
 * Runs one `useLiveRecorder` for everything inside it: put it around the app's routes (in the
 * root or layout component, which stays mounted) and read the controls anywhere below with
 * `useLiveRecorderContext()`. Pages then come and go while the live goes on.
 */
export function LiveRecorderProvider({ children, ...options }: LiveRecorderProviderProps): ReactElement {
  const controls = useLiveRecorder(options);
  return createElement(LiveRecorderContext.Provider, { value: controls }, children);
}

/** The controls of the enclosing `LiveRecorderProvider`; throws when there is none. */
export function useLiveRecorderContext(): LiveRecorderControls {
  const controls = useContext(LiveRecorderContext);
  if (!controls) {
    throw new Error("useLiveRecorderContext() must be called inside a <LiveRecorderProvider>");
  }
  return controls;
}

/** Finishes the lives a closed tab left in this browser's journal (call it once the user is
 * signed in); resolves with the `video_data` of each live it stopped. `auth` is the token or
 * a `getToken` function. */
export function resumePendingRecordings(
  auth: string | (() => Promise<string>),
  apiBase?: string,
): Promise<VideoData[]> {
  return resumePending(typeof auth === "string" ? { token: auth, apiBase } : { getToken: auth, apiBase });
}
