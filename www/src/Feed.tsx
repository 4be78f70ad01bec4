import { useCallback, useEffect, useState, type MouseEvent } from "react";
import { api, ApiError, type Post } from "./api";
import { errorMessage, locale, t } from "./i18n";
import { formatDuration, splitDateTime } from "./format";
import { hrefFor, type Route } from "./route";
import { useBroadcast } from "./broadcast";

/**
 * What the original design lists under a saved live: the recording's title, when it was
 * recorded, how long it lasts, its viewers and chat messages (counted when it ended).
 */
export function PostFacts({ post }: { post: Post }) {
  const media = post.media_files[0];
  const startedAt = post.started_at ?? post.created_at;
  const when = splitDateTime(startedAt, locale);
  return (
    <ul className="facts" data-testid="stats">
      {media && (
        <li data-testid="recording-title">
          <span aria-hidden="true">📹 </span>
          {media.title}
        </li>
      )}
      <li>
        <span aria-hidden="true">📅 </span>
        <time dateTime={startedAt} data-testid="recorded-at">
          {post.live_status === "live" ? t.startedOn(when.date, when.time) : t.recordedOn(when.date, when.time)}
        </time>
      </li>
      {media && (
        <li>
          <span aria-hidden="true">⏱️ </span>
          <span data-testid="duration">{t.durationLabel(formatDuration(media.duration))}</span>
        </li>
      )}
      <li data-testid="viewers">
        <span aria-hidden="true">👁️ </span>
        {t.viewers(post.viewer_count)}
      </li>
      <li data-testid="messages">
        <span aria-hidden="true">💬 </span>
        {t.messages(post.chat_message_count)}
      </li>
    </ul>
  );
}

/** The author of a post, and whether its live was cut short. */
export function PostByline({ post }: { post: Post }) {
  return (
    <p className="meta">
      <span className="author" data-testid="author">
        @{post.author.username}
      </span>
      {post.live_status === "interrupted" && <span className="tag"> · {t.interrupted}</span>}
    </p>
  );
}

/** One post of the feed: the recording with its live information. */
export function PostCard({ post }: { post: Post }) {
  const media = post.media_files[0];
  const live = post.live_status === "live";
  // The person's own live in progress leads to their recording panel (above the feed), not to
  // a viewer's seat where they would count as their own viewer.
  const { recorder, active } = useBroadcast();
  const mine = live && active && recorder.liveId === post.id;
  const target: Route = mine ? { page: "home" } : { page: live ? "live" : "post", id: post.id };
  const open = mine
    ? (event: MouseEvent) => {
        event.preventDefault();
        document.getElementById("golive-heading")?.scrollIntoView({ behavior: "smooth" });
      }
    : undefined;
  return (
    <article className="card" data-testid="post" data-post-id={post.id} aria-labelledby={`post-${post.id}-title`}>
      <div className="media">
        {media ? (
          <video
            controls
            preload="metadata"
            playsInline
            src={media.file_url}
            poster={media.poster_url ?? undefined}
            aria-label={media.title}
          />
        ) : live ? (
          <a className="placeholder" href={hrefFor(target)} onClick={open}>
            ▶ {t.watch}
          </a>
        ) : (
          <span className="placeholder muted">{t.noVideo}</span>
        )}
        {(media?.is_live_recording || live) && (
          <span className={`badge ${live ? "pulse" : ""}`} data-testid="live-badge">
            {live ? t.liveNow : t.liveBadge}
          </span>
        )}
      </div>
      <div className="body">
        <h3 id={`post-${post.id}-title`}>
          <a href={hrefFor(target)} onClick={open}>
            {post.content}
          </a>
        </h3>
        <PostByline post={post} />
        <PostFacts post={post} />
      </div>
    </article>
  );
}

function Skeleton() {
  return (
    <div className="card skeleton" aria-hidden="true">
      <div className="media" />
      <div className="body">
        <div className="line" />
        <div className="line short" />
      </div>
    </div>
  );
}

const PAGE_SIZE = 20;

/** The feed, newest first, loaded page by page. `version` changes reload it. */
export function Feed({ version }: { version: number }) {
  const [posts, setPosts] = useState<Post[] | undefined>();
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | undefined>();
  const [loading, setLoading] = useState(false);

  const load = useCallback(async (from: string | null) => {
    setLoading(true);
    setError(undefined);
    try {
      const page = await api.feed(from, PAGE_SIZE);
      setPosts((previous) => (from && previous ? [...previous, ...page.results] : page.results));
      setCursor(page.next_cursor);
    } catch (e) {
      setError(e instanceof ApiError ? errorMessage(e.code, e.message) : errorMessage(undefined));
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    void load(null);
  }, [load, version]);

  // Lives start and end while the page is open: refresh the first page now and then, unless the
  // person has loaded more pages (a refresh would drop them).
  const onFirstPage = (posts?.length ?? 0) <= PAGE_SIZE;
  useEffect(() => {
    if (!onFirstPage) return;
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") void load(null);
    }, 15_000);
    return () => clearInterval(timer);
  }, [load, onFirstPage]);

  return (
    <section className="feed" aria-labelledby="feed-heading" aria-busy={loading}>
      <h2 id="feed-heading">{t.feed}</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {posts === undefined && !error && [0, 1, 2].map((i) => <Skeleton key={i} />)}
      {posts?.length === 0 && <p className="empty">{t.emptyFeed}</p>}
      <div className="cards">
        {posts?.map((post) => (
          <PostCard key={post.id} post={post} />
        ))}
      </div>
      {cursor && (
        <button type="button" onClick={() => load(cursor)} disabled={loading}>
          {t.loadMore}
        </button>
      )}
    </section>
  );
}
