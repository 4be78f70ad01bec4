import { useEffect, useRef, useState, type FormEvent } from "react";
import { errorMessage, locale, t } from "./i18n";
import { formatBytes, formatDuration } from "./format";
import { ChatPanel } from "./ChatPanel";
import { useLiveEvents } from "./useLiveEvents";
import { useBroadcast } from "./broadcast";
import type { Session } from "./api";

/** Upload trouble the recorder rides out by itself; other warnings (poster, journal) are not the person's concern. */
function isConnectionTrouble(code: string): boolean {
  return code === "network" || code === "timeout" || /^http_5\d\d$/.test(code);
}

/**
 * The recording panel: camera preview, title, and the live's controls (go live, pause, resume,
 * stop), its viewers and chat. The live itself belongs to the app (`BroadcastProvider`): leaving
 * this panel keeps it recording, and coming back shows it again.
 */
export function GoLive({ session }: { session: Session }) {
  const { recorder, stream, problem, active, preparing, recovered, goLive, stop } = useBroadcast();
  const [title, setTitle] = useState("");
  const preview = useRef<HTMLVideoElement>(null);

  const { state } = recorder;
  const onAir = state === "recording" || state === "paused" || state === "stopping";
  const room = useLiveEvents(onAir ? recorder.liveId : undefined, true);

  useEffect(() => {
    if (preview.current) preview.current.srcObject = stream ?? null;
  }, [stream]);

  // A new live starts with an empty title field.
  useEffect(() => {
    if (state === "saved") setTitle("");
  }, [state]);

  function submit(event: FormEvent) {
    event.preventDefault();
    void goLive(title);
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
              👁️ {t.viewers(room.counts?.viewers ?? 0)}
            </p>
          )}
          {!active ? (
            <form onSubmit={submit} className="row">
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
              <button type="submit" className="primary live" disabled={preparing}>
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
              <button type="button" className="primary" onClick={() => void stop()} disabled={state === "stopping" || state === "starting"}>
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
        </div>
        {onAir && recorder.liveId !== undefined && (
          <ChatPanel messages={room.messages} send={{ liveId: recorder.liveId, token: session.token }} />
        )}
      </div>
    </section>
  );
}
