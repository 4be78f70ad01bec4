import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, ApiError, type ChatMessage } from "./api";
import { errorMessage, t } from "./i18n";
import { formatDuration } from "./format";

interface ChatPanelProps {
  messages: ChatMessage[];
  /** Where sending goes: a live in progress and a signed-in author. */
  send?: { liveId: number; token: string };
  /** In a replay: clicking a message seeks the video to it. */
  onSeek?: (offset: number) => void;
  /** A live whose visitor is signed out: where to sign in to write. */
  signInHint?: string;
}

/** The chat of a live, or of its replay. */
export function ChatPanel({ messages, send, onSeek, signInHint }: ChatPanelProps) {
  const [draft, setDraft] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const list = useRef<HTMLOListElement>(null);

  useEffect(() => {
    list.current?.lastElementChild?.scrollIntoView({ block: "nearest" });
  }, [messages.length]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!send || !draft.trim()) return;
    setBusy(true);
    setError(undefined);
    try {
      await api.sendChat(send.liveId, draft.trim(), send.token);
      setDraft("");
    } catch (e) {
      setError(e instanceof ApiError ? errorMessage(e.code, e.message) : errorMessage(undefined));
    } finally {
      setBusy(false);
    }
  }

  return (
    <aside className="chat" aria-label={t.chat}>
      <h3>{t.chat}</h3>
      <ol ref={list} data-testid="chat-messages" aria-live="polite">
        {messages.length === 0 && <li className="empty">{t.noMessages}</li>}
        {messages.map((m) => (
          <li key={m.id} data-testid="chat-message" data-offset={m.offset}>
            {onSeek ? (
              <button type="button" className="link seek" onClick={() => onSeek(m.offset)}>
                {formatDuration(m.offset)}
              </button>
            ) : (
              <span className="at">{formatDuration(m.offset)}</span>
            )}{" "}
            <strong>@{m.author.username}</strong> <span className="text">{m.body}</span>
          </li>
        ))}
      </ol>
      {send && (
        <form className="row" onSubmit={submit}>
          <input
            name="chat"
            className="grow"
            aria-label={t.chatInput}
            placeholder={t.chatInput}
            maxLength={500}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
          />
          <button type="submit" disabled={busy || !draft.trim()}>
            {t.send}
          </button>
        </form>
      )}
      {!send && signInHint && (
        <p className="hint" data-testid="chat-sign-in">
          <a href={signInHint}>{t.signInToChat}</a>
        </p>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </aside>
  );
}
