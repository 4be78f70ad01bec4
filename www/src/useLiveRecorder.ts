// React binding of the wasm LiveRecorder: state, progress and errors as values.
import { useCallback, useEffect, useRef, useState } from "react";
import init, {
  LiveRecorder,
  type RecorderErrorInfo,
  type RecorderProgress,
  type RecorderState,
  type VideoData,
} from "livekeep-recorder";

let ready: Promise<unknown> | undefined;

/** Loads and instantiates the wasm module once per page. */
export function loadRecorder(): Promise<unknown> {
  ready ??= init();
  return ready;
}

export interface UseLiveRecorderOptions {
  token: string;
  apiBase?: string;
  timesliceMs?: number;
}

/** An error thrown by the recorder, with its machine-readable code. */
export interface RecorderFailure {
  code: string;
  message: string;
}

function asFailure(error: unknown): RecorderFailure {
  const e = error as { code?: unknown; message?: unknown } | undefined;
  return {
    code: typeof e?.code === "string" ? e.code : "generic",
    message: typeof e?.message === "string" ? e.message : String(error),
  };
}

export function useLiveRecorder(options: UseLiveRecorderOptions) {
  const [state, setState] = useState<RecorderState>("idle");
  const [progress, setProgress] = useState<RecorderProgress | undefined>();
  const [error, setError] = useState<RecorderFailure | undefined>();
  const [warning, setWarning] = useState<RecorderErrorInfo | undefined>();
  const recorder = useRef<LiveRecorder | undefined>(undefined);

  const start = useCallback(
    async (stream: MediaStream, title: string) => {
      setError(undefined);
      setWarning(undefined);
      try {
        await loadRecorder();
        const rec = new LiveRecorder({
          token: options.token,
          apiBase: options.apiBase,
          timesliceMs: options.timesliceMs,
          title,
          onStateChange: setState,
          onProgress: (p) => {
            setProgress(p);
            if (p.bufferedBytes === 0) setWarning(undefined);
          },
          onError: (e) => (e.fatal ? setError({ code: e.code, message: e.message }) : setWarning(e)),
        });
        recorder.current = rec;
        await rec.start(stream);
      } catch (e) {
        setState("failed");
        setError(asFailure(e));
        throw e;
      }
    },
    [options.token, options.apiBase, options.timesliceMs],
  );

  const stop = useCallback(async (): Promise<VideoData> => {
    const rec = recorder.current;
    if (!rec) throw new Error("not recording");
    try {
      return await rec.stop();
    } catch (e) {
      setError(asFailure(e));
      throw e;
    }
  }, []);

  const pause = useCallback(() => recorder.current?.pause(), []);
  const resume = useCallback(() => recorder.current?.resume(), []);
  /** Seconds recorded so far, paused time excluded; read it on a timer for a smooth clock. */
  const duration = useCallback(() => recorder.current?.duration ?? 0, []);

  useEffect(() => () => recorder.current?.free(), []);

  return { state, progress, error, warning, start, stop, pause, resume, duration };
}

/** Finishes recordings that a closed tab left in the browser's journal. */
export async function resumePendingRecordings(token: string, apiBase?: string): Promise<VideoData[]> {
  await loadRecorder();
  const resumePending = (LiveRecorder as unknown as { resumePending?: typeof LiveRecorder.resumePending })
    .resumePending;
  return resumePending ? resumePending({ token, apiBase }) : [];
}
