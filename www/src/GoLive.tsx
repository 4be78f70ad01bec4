import { useEffect, useRef, useState, type FormEvent } from "react";
import { pickMimeType, type VideoData } from "@livekeep/recorder";
import { resumePendingRecordings, useLiveRecorder } from "@livekeep/recorder/react";
import { errorMessage, locale, t } from "./i18n";
import { formatBytes, formatDuration } from "./format";
import { ChatPanel } from "./ChatPanel";
import { useLiveEvents } from "./useLiveEvents";
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

interface GoLiveProps {
  session: Session;
  onStarted: () => void;
  onSaved: (data: VideoData) => void;
}

/** Camera preview, title, and the live's controls: go live, pause, resume, stop; its viewers and chat. */
export function GoLive({ session, onStarted, onSaved }: GoLiveProps) {
  const recorder = useLiveRecorder({ token: session.token });
  const [title, setTitle] = useState("");
  const [stream, setStream] = useState<MediaStream | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  const [recovered, setRecovered] = useState(0);
  const preview = useRef<HTMLVideoElement>(null);

  const { state } = recorder;
  const active = state === "starting" || state === "recording" || state === "paused" || state === "stopping";
  const onAir = state === "recording" || state === "paused" || state === "stopping";
  const room = useLiveEvents(onAir ? recorder.liveId : undefined, true);

  useEffect(() => {
    if (preview.current) preview.current.srcObject = stream ?? null;
  }, [stream]);

  // The hook turns the camera off once the live is saved or failed; drop the preview then too.
  useEffect(() => {
    if (state === "saved" || state === "failed") setStream(undefined);
  }, [state]);

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

  async function goLive(event: FormEvent) {
    event.preventDefault();
    setProblem(undefined);
    let mime: string | undefined;
    try {
      mime = await pickMimeType();
    } catch {
      setProblem(errorMessage("generic"));
      return;
    }
    if (!mime) {
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
      setStream(undefined);
      const code = (e as { code?: string }).code;
      setProblem(errorMessage(code === "network" ? "unreachable" : code, (e as Error).message));
    }
  }

  async function stop() {
    try {
      onSaved(await recorder.stop());
    } catch (e) {
      setProblem(errorMessage((e as { code?: string }).code, (e as Error).message));
    }
  }

  const { uploadedBytes: uploaded, bytesRecorded: recorded, videoData: saved } = recorder;

  return (
    <section className="panel golive" aria-labelledby="golive-heading">
      <h2 id="golive-heading">{t.goLiveHeading}</h2>
      <div className={onAir && recorder.liveId !== undefined ? "watch" : undefined}>
        <div className="player">
          <div className="preview">
            <video ref={preview} muted autoPlay playsInline aria-label={t.goLiveHeading} />
            {(state === "recording" || state === "paused") && (
              <span className={`badge ${state === "recording" ? "pulse" : ""}`}>
                {state === "recording" ? t.liveNow : t.paused}
              </span>
            )}
          </div>
          {onAir && (
            <p className="stats" data-testid="broadcaster-viewers">
              👥 {t.viewers(room.counts?.viewers ?? 0)}
            </p>
          )}
        </div>
        {onAir && recorder.liveId !== undefined && (
          <ChatPanel messages={room.messages} send={{ liveId: recorder.liveId, token: session.token }} />
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
            {formatDuration(recorder.duration)}
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
      {state === "stopping" &&
        (uploaded < recorded ? (
          <progress className="upload" max={recorded} value={uploaded} aria-label={t.saving} />
        ) : (
          // Every byte is on the server: it now checks and finalizes the recording (no byte count to show).
          <p className="row" role="status" data-testid="finalizing">
            <progress className="upload" aria-label={t.finalizing} /> {t.finalizing}
          </p>
        ))}
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
      {state === "saved" && saved && (
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
