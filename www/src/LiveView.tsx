import { useEffect, useRef, useState } from "react";
import { api, liveStreamUrl, type Post, type Session } from "./api";
import { ChatPanel } from "./ChatPanel";
import { t } from "./i18n";
import { hrefFor, navigate } from "./route";
import { useLiveEvents } from "./useLiveEvents";

/** Why the live's stream is not playing, as the server tells it. */
type StreamTrouble = "retry" | "not_streamable" | "ended" | "missing";

/**
 * Asks the stream itself why the <video> could not play it (the element only says "error"):
 * a recording that cannot play before it is whole (409 `not_streamable`), an ended live answers
 * 409 `live_ended`, an unknown one 404; anything else is worth another try.
 */
async function diagnoseStream(liveId: number): Promise<StreamTrouble> {
  const controller = new AbortController();
  try {
    const response = await fetch(liveStreamUrl(liveId), { signal: controller.signal });
    if (response.status === 404) return "missing";
    if (response.status === 409) {
      const body = (await response.json().catch(() => undefined)) as { error?: { code?: string } } | undefined;
      if (body?.error?.code === "not_streamable") return "not_streamable";
      if (body?.error?.code === "live_ended") return "ended";
    }
    return "retry";
  } catch {
    return "retry";
  } finally {
    // A stream that answers 200 plays in the <video> again; this request only wanted the status.
    controller.abort();
  }
}

/** Watching a live in progress: the progressive stream near the live edge, viewers and chat. */
export function LiveView({ liveId, session }: { liveId: number; session: Session | undefined }) {
  const [post, setPost] = useState<Post | undefined>();
  const [attempt, setAttempt] = useState(0);
  const [trouble, setTrouble] = useState<StreamTrouble | undefined>();
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

  // A dropped stream is reopened (at the live edge again) while the live runs, unless the
  // server says it cannot be watched before its end: then the page waits for the end.
  const reconnecting = useRef(false);
  async function reconnect() {
    if (ended || reconnecting.current) return;
    reconnecting.current = true;
    const why = await diagnoseStream(liveId);
    if (why === "ended") {
      api.post(liveId).then(setPost, () => undefined);
    } else if (why === "retry") {
      await new Promise((r) => setTimeout(r, 1000));
      setAttempt((n) => n + 1);
    }
    setTrouble(why);
    reconnecting.current = false;
  }

  const playable = !ended && trouble !== "not_streamable" && trouble !== "missing";
  if (trouble === "missing" && !post) {
    return (
      <p className="error" role="alert" data-testid="live-missing">
        {t.liveNotFound}
      </p>
    );
  }
  return (
    <section className="watch" aria-labelledby="watch-heading">
      <div className="player">
        <h2 id="watch-heading">{post?.content ?? t.liveNow}</h2>
        <div className="media">
          {playable && (
            <video
              ref={video}
              key={attempt}
              src={`${liveStreamUrl(liveId)}?attempt=${attempt}`}
              autoPlay
              muted
              playsInline
              controls
              data-testid="live-video"
              onError={() => void reconnect()}
              onEnded={() => void reconnect()}
            />
          )}
          {trouble === "not_streamable" && !ended && (
            <p className="placeholder notice" role="status" data-testid="not-streamable">
              {t.notStreamable}
            </p>
          )}
          <span className={`badge ${ended ? "" : "pulse"}`}>{ended ? t.liveEnded : t.liveNow}</span>
        </div>
        {post && <p className="meta">@{post.author.username}</p>}
        <p className="stats" data-testid="live-viewers">
          👁️ {t.viewers(events.counts?.viewers ?? 0)}
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
        signInHint={!session && !ended ? hrefFor({ page: "home" }) : undefined}
      />
    </section>
  );
}
