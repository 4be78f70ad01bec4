import { useCallback, useEffect, useState } from "react";
import { api, ApiError, type Post } from "./api";
import { errorMessage, locale, t } from "./i18n";
import { formatDuration, splitDateTime } from "./format";
import { hrefFor } from "./route";

/** Viewers and chat messages of a live, as counted when it ended. */
export function PostCardDetails({ post }: { post: Post }) {
  return (
    <p className="stats" data-testid="stats">
      👥 {t.viewers(post.viewer_count)} · 💬 {t.messages(post.chat_message_count)}
    </p>
  );
}

/** One post of the feed: the recording with its live information. */
export function PostCard({ post }: { post: Post }) {
  const media = post.media_files[0];
  const when = splitDateTime(post.started_at ?? post.created_at, locale);
  const live = post.live_status === "live";
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
        ) : (
          <a className="placeholder" href={hrefFor({ page: "live", id: post.id })}>
            {live ? `▶ ${t.watch}` : "—"}
          </a>
        )}
        {(media?.is_live_recording || live) && (
          <span className={`badge ${live ? "pulse" : ""}`} data-testid="live-badge">
            {live ? t.liveNow : t.liveBadge}
          </span>
        )}
        {media && (
          <span className="duration" data-testid="duration">
            {formatDuration(media.duration)}
          </span>
        )}
      </div>
      <div className="body">
        <h3 id={`post-${post.id}-title`}>
          <a href={hrefFor({ page: live ? "live" : "post", id: post.id })}>{post.content}</a>
        </h3>
        <p className="meta">
          <span className="author">@{post.author.username}</span>
          {" · "}
          <time dateTime={post.started_at ?? post.created_at} data-testid="recorded-at">
            {t.recordedOn(when.date, when.time)}
          </time>
          {post.live_status === "interrupted" && <span className="tag"> · {t.interrupted}</span>}
        </p>
        <PostCardDetails post={post} />
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
