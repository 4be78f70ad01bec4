import { useEffect, useRef, useState, type FormEvent } from "react";
import { LiveRecorder, type VideoData } from "livekeep-recorder";
import { errorMessage, locale, t } from "./i18n";
import { formatBytes, formatDuration } from "./format";
import { loadRecorder, resumePendingRecordings, useLiveRecorder } from "./useLiveRecorder";
import type { Session } from "./api";

/** Maps getUserMedia's DOMException names to our error codes. */
function cameraErrorCode(error: unknown): string {
  const name = (error as { name?: string } | undefined)?.name;
  if (name === "NotAllowedError" || name === "SecurityError") return "camera_denied";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "no_camera";
  return "generic";
}

/** Upload trouble the recorder rides out by itself; other warnings (poster, journal) are not the person's concern. */
function isConnectionTrouble(code: string): boolean {
  return code === "network" || code === "timeout" || /^http_5\d\d$/.test(code);
}

/** Camera preview, title, and the live's controls: go live, pause, resume, stop. */
export function GoLive({
  session,
  onSaved,
  onStarted,
}: {
  session: Session;
  onSaved: (data: VideoData) => void;
  onStarted: () => void;
}) {
  const recorder = useLiveRecorder({ token: session.token });
  const [title, setTitle] = useState("");
  const [stream, setStream] = useState<MediaStream | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  const [elapsed, setElapsed] = useState(0);
  const [saved, setSaved] = useState<VideoData | undefined>();
  const [recovered, setRecovered] = useState(0);
  const preview = useRef<HTMLVideoElement>(null);

  const { state, progress } = recorder;
  const active = state === "starting" || state === "recording" || state === "paused" || state === "stopping";

  useEffect(() => {
    if (preview.current) preview.current.srcObject = stream ?? null;
  }, [stream]);

  // A smooth clock: the recorder's duration excludes pauses, progress events come once per chunk.
  useEffect(() => {
    if (state !== "recording" && state !== "paused") return;
    const timer = setInterval(() => setElapsed(recorder.duration()), 250);
    return () => clearInterval(timer);
  }, [state, recorder.duration]);

  // Recordings left behind by a closed tab are finished as soon as their owner comes back.
  useEffect(() => {
    resumePendingRecordings(session.token)
      .then((done) => {
        if (done.length > 0) {
          setRecovered(done.length);
          done.forEach(onSaved);
        }
      })
      .catch(() => undefined);
  }, [session.token, onSaved]);

  function release() {
    stream?.getTracks().forEach((track) => track.stop());
    setStream(undefined);
  }

  async function goLive(event: FormEvent) {
    event.preventDefault();
    setProblem(undefined);
    setSaved(undefined);
    setElapsed(0);
    try {
      await loadRecorder();
    } catch {
      setProblem(errorMessage("generic"));
      return;
    }
    if (!LiveRecorder.pickMimeType()) {
      setProblem(errorMessage("no_supported_format"));
      return;
    }
    let media: MediaStream;
    try {
      media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    } catch (e) {
      setProblem(errorMessage(cameraErrorCode(e)));
      return;
    }
    setStream(media);
    try {
      await recorder.start(media, title.trim() || t.goLiveHeading);
      onStarted();
    } catch (e) {
      media.getTracks().forEach((track) => track.stop());
      setStream(undefined);
      const code = (e as { code?: string }).code;
      setProblem(errorMessage(code === "network" ? "unreachable" : code, (e as Error).message));
    }
  }

  async function stop() {
    try {
      const data = await recorder.stop();
      setSaved(data);
      onSaved(data);
    } catch (e) {
      setProblem(errorMessage((e as { code?: string }).code, (e as Error).message));
    } finally {
      release();
    }
  }

  const uploaded = progress?.uploadedBytes ?? 0;
  const recorded = progress?.bytesRecorded ?? 0;

  return (
    <section className="panel golive" aria-labelledby="golive-heading">
      <h2 id="golive-heading">{t.goLiveHeading}</h2>
      <div className="preview">
        <video ref={preview} muted autoPlay playsInline aria-label={t.goLiveHeading} />
        {(state === "recording" || state === "paused") && (
          <span className={`badge ${state === "recording" ? "pulse" : ""}`}>
            {state === "recording" ? t.liveNow : t.paused}
          </span>
        )}
      </div>
      {!active ? (
        <form onSubmit={goLive} className="row">
          <label className="grow">
            <span className="sr-only">{t.liveTitle}</span>
            <input
              name="title"
              placeholder={t.liveTitlePlaceholder}
              aria-label={t.liveTitle}
              maxLength={200}
              value={title}
              onChange={(e) => setTitle(e.target.value)}
            />
          </label>
          <button type="submit" className="primary live">
            {t.goLive}
          </button>
        </form>
      ) : (
        <div className="row controls">
          <span className="clock" data-testid="clock" aria-live="off">
            {formatDuration(elapsed)}
          </span>
          <span className="bytes" data-testid="bytes">
            {formatBytes(recorded, locale)} {t.recorded} · {formatBytes(uploaded, locale)} {t.uploaded}
          </span>
          {state === "recording" && (
            <button type="button" onClick={recorder.pause}>
              {t.pause}
            </button>
          )}
          {state === "paused" && (
            <button type="button" onClick={recorder.resume}>
              {t.resume}
            </button>
          )}
          <button type="button" className="primary" onClick={stop} disabled={state === "stopping" || state === "starting"}>
            {state === "stopping" ? t.saving : t.stop}
          </button>
        </div>
      )}
      {state === "stopping" && recorded > 0 && (
        <progress className="upload" max={recorded} value={uploaded} aria-label={t.saving} />
      )}
      {recorder.warning && !recorder.error && isConnectionTrouble(recorder.warning.code) && (
        <p className="warning" role="status" data-testid="retrying">
          {t.retrying}
        </p>
      )}
      {(problem || recorder.error) && (
        <p className="error" role="alert">
          {problem ?? errorMessage(recorder.error?.code, recorder.error?.message)}
        </p>
      )}
      {saved && (
        <p className="toast" role="status" data-testid="saved" data-live-id={saved.live_id} data-sha256={saved.sha256}>
          {t.saved}
        </p>
      )}
      {recovered > 0 && (
        <p className="toast" role="status" data-testid="recovered">
          {t.resumed(recovered)}
        </p>
      )}
    </section>
  );
}
