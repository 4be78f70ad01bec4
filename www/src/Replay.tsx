import { useEffect, useRef, useState } from "react";
import { api, type ChatMessage, type Post } from "./api";
import { ChatPanel } from "./ChatPanel";
import { errorMessage, t } from "./i18n";
import { PostByline, PostFacts } from "./Feed";
import { hrefFor } from "./route";

/** A recording with its chat beside it, in time with the video. */
export function Replay({ postId }: { postId: number }) {
  const [post, setPost] = useState<Post | undefined>();
  const [chat, setChat] = useState<ChatMessage[]>([]);
  const [error, setError] = useState<string | undefined>();
  const [currentTime, setCurrentTime] = useState(0);
  const video = useRef<HTMLVideoElement>(null);

  useEffect(() => {
    api.post(postId).then(setPost, (e) => setError(errorMessage(e.code, e.message)));
    api.chat(postId).then((page) => setChat(page.results), () => setChat([]));
  }, [postId]);

  const media = post?.media_files[0];
  // Derived from currentTime, so a seek backwards hides the later messages again.
  const shown = chat.filter((m) => m.offset <= currentTime);

  function seek(offset: number) {
    if (!video.current) return;
    video.current.currentTime = offset;
    setCurrentTime(offset);
  }

  if (error)
    return (
      <p className="error" role="alert">
        {error}
      </p>
    );
  if (!post) return <p aria-busy="true">…</p>;
  return (
    <section className="watch" aria-labelledby="replay-heading">
      <div className="player">
        <h2 id="replay-heading">{post.content}</h2>
        <div className="media">
          {media ? (
            <video
              ref={video}
              controls
              playsInline
              preload="metadata"
              src={media.file_url}
              poster={media.poster_url ?? undefined}
              data-testid="replay-video"
              onTimeUpdate={(e) => setCurrentTime(e.currentTarget.currentTime)}
              onSeeked={(e) => setCurrentTime(e.currentTarget.currentTime)}
            />
          ) : post.live_status === "live" ? (
            <a className="placeholder" href={hrefFor({ page: "live", id: post.id })}>
              ▶ {t.watch}
            </a>
          ) : (
            <div className="placeholder muted">{t.noVideo}</div>
          )}
          {media?.is_live_recording && <span className="badge">{t.liveBadge}</span>}
        </div>
        <PostByline post={post} />
        <PostFacts post={post} />
      </div>
      <ChatPanel messages={shown} onSeek={seek} />
    </section>
  );
}
