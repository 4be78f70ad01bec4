import { useEffect, useRef, useState } from "react";
import { api, liveStreamUrl, type Post, type Session } from "./api";
import { ChatPanel } from "./ChatPanel";
import { t } from "./i18n";
import { navigate } from "./route";
import { useLiveEvents } from "./useLiveEvents";

/** Watching a live in progress: the progressive stream near the live edge, viewers and chat. */
export function LiveView({ liveId, session }: { liveId: number; session: Session | undefined }) {
  const [post, setPost] = useState<Post | undefined>();
  const [attempt, setAttempt] = useState(0);
  const video = useRef<HTMLVideoElement>(null);
  const events = useLiveEvents(liveId);

  useEffect(() => {
    api.post(liveId).then(setPost, () => setPost(undefined));
  }, [liveId]);

  // A live that already ended, or ends while watched, continues as its replay.
  const ended = events.ended ?? (post && post.live_status !== "live" ? post : undefined);
  useEffect(() => {
    if (!ended) return;
    const timer = setTimeout(() => navigate({ page: "post", id: liveId }), 1500);
    return () => clearTimeout(timer);
  }, [ended, liveId]);

  // A dropped stream is reopened (at the live edge again) while the live runs.
  function reconnect() {
    if (!ended) setTimeout(() => setAttempt((n) => n + 1), 1000);
  }

  return (
    <section className="watch" aria-labelledby="watch-heading">
      <div className="player">
        <h2 id="watch-heading">{post?.content ?? t.liveNow}</h2>
        <div className="media">
          {!ended && (
            <video
              ref={video}
              key={attempt}
              src={`${liveStreamUrl(liveId)}?attempt=${attempt}`}
              autoPlay
              muted
              playsInline
              controls
              data-testid="live-video"
              onError={reconnect}
              onEnded={reconnect}
            />
          )}
          <span className={`badge ${ended ? "" : "pulse"}`}>{ended ? t.liveEnded : t.liveNow}</span>
        </div>
        <p className="stats" data-testid="live-viewers">
          👥 {t.viewers(events.counts?.viewers ?? 0)}
        </p>
        {ended && (
          <p className="toast" role="status" data-testid="live-ended">
            {t.liveEnded}
          </p>
        )}
      </div>
      <ChatPanel
        messages={events.messages}
        send={session && !ended ? { liveId, token: session.token } : undefined}
      />
    </section>
  );
}
