// Follows a live's Server-Sent Events: viewer counts, chat messages, and the end of the live.
import { useEffect, useState } from "react";
import { liveEventsUrl, type ChatMessage, type Post, type ViewerCounts } from "./api";

const VIEWER_KEY = "livekeep.viewer_id";

/** A random id this browser keeps, so that a reconnection counts as the same viewer. */
export function viewerId(): string {
  let id = sessionStorage.getItem(VIEWER_KEY);
  if (!id) {
    id = crypto.randomUUID();
    sessionStorage.setItem(VIEWER_KEY, id);
  }
  return id;
}

export interface LiveEvents {
  counts: ViewerCounts | undefined;
  messages: ChatMessage[];
  ended: Post | undefined;
  connected: boolean;
}

export function useLiveEvents(liveId: number | undefined, asBroadcaster = false): LiveEvents {
  const [counts, setCounts] = useState<ViewerCounts | undefined>();
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [ended, setEnded] = useState<Post | undefined>();
  const [connected, setConnected] = useState(false);

  useEffect(() => {
    if (liveId === undefined) return;
    setMessages([]);
    setEnded(undefined);
    // EventSource reconnects by itself after a network drop; the viewer id keeps the count right.
    const source = new EventSource(liveEventsUrl(liveId, viewerId(), asBroadcaster));
    source.onopen = () => setConnected(true);
    source.onerror = () => setConnected(false);
    source.addEventListener("viewers", (e) => setCounts(JSON.parse((e as MessageEvent).data)));
    source.addEventListener("chat", (e) => {
      const message = JSON.parse((e as MessageEvent).data) as ChatMessage;
      // A reconnection may replay messages already shown.
      setMessages((list) => (list.some((m) => m.id === message.id) ? list : [...list, message]));
    });
    source.addEventListener("ended", (e) => {
      setEnded(JSON.parse((e as MessageEvent).data));
      source.close();
      setConnected(false);
    });
    return () => source.close();
  }, [liveId, asBroadcaster]);

  return { counts, messages, ended, connected };
}
