import { useEffect, useState } from "react";
import { useBroadcast } from "./broadcast";
import { formatDuration } from "./format";
import { errorMessage, t } from "./i18n";
import { hrefFor } from "./route";

/**
 * The person's live, seen from any page but the recording panel: its clock, a way back to the
 * panel and the stop button; then how the stop went, until dismissed.
 */
export function OnAirBar() {
  const { recorder, active, stop } = useBroadcast();
  const { state, liveId } = recorder;
  // The outcome is shown only to whoever saw the live end from this page: a live stopped from
  // the recording panel already said how it went there.
  const [followed, setFollowed] = useState(active);
  const [dismissed, setDismissed] = useState(false);
  useEffect(() => {
    if (active) {
      setFollowed(true);
      setDismissed(false);
    }
  }, [active]);

  const finished = state === "saved" || state === "failed";
  if (!active && !(finished && followed && !dismissed)) return null;

  if (state === "saved") {
    return (
      <div className="onair done" role="status" data-testid="onair-bar">
        <span>{t.savedShort}</span>
        {liveId !== undefined && <a href={hrefFor({ page: "post", id: liveId })}>{t.seeRecording}</a>}
        <button type="button" className="link" onClick={() => setDismissed(true)}>
          {t.dismiss}
        </button>
      </div>
    );
  }
  if (state === "failed") {
    return (
      <div className="onair failed" role="alert" data-testid="onair-bar">
        <span>{errorMessage(recorder.error?.code, recorder.error?.message)}</span>
        <a href={hrefFor({ page: "home" })}>{t.backToLive}</a>
        <button type="button" className="link" onClick={() => setDismissed(true)}>
          {t.dismiss}
        </button>
      </div>
    );
  }

  const stopping = state === "stopping";
  return (
    <div className="onair" role="region" aria-label={t.onAir} data-testid="onair-bar">
      <span className={`badge-inline ${state === "recording" ? "pulse" : ""}`}>
        {state === "paused" ? t.paused : state === "starting" ? t.starting : t.liveNow}
      </span>
      <span className="clock" data-testid="onair-clock">
        {formatDuration(recorder.duration)}
      </span>
      <a href={hrefFor({ page: "home" })}>{t.backToLive}</a>
      <button type="button" className="primary" onClick={() => void stop()} disabled={stopping || state === "starting"}>
        {stopping ? t.saving : t.stop}
      </button>
    </div>
  );
}
