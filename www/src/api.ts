// Typed client for the Livekeep HTTP contract (shared/API.md).

export interface User {
  id: number;
  username: string;
}

export interface Media {
  id: number;
  user: User;
  title: string;
  description: string;
  file_type: "video";
  file_url: string;
  mime_type: string;
  duration: number;
  size: number;
  original_sha256: string;
  is_live_recording: boolean;
  live_post: number | null;
  poster_url: string | null;
  created_at: string;
}

export type LiveStatus = "live" | "ended" | "interrupted";

export interface Post {
  id: number;
  author: User;
  content: string;
  is_live: boolean;
  live_status: LiveStatus;
  started_at: string | null;
  ended_at: string | null;
  viewer_count: number;
  peak_viewers: number;
  chat_message_count: number;
  media_files: Media[];
  created_at: string;
}

export interface ChatMessage {
  id: number;
  post: number;
  author: User;
  body: string;
  created_at: string;
  /** Seconds since the recording started. */
  offset: number;
}

export interface ViewerCounts {
  viewers: number;
  peak_viewers: number;
}

export interface Session {
  user: User;
  token: string;
}

export interface FeedPage {
  results: Post[];
  next_cursor: string | null;
}

/** An answer of the server that is not a success, with the contract's error code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/**
 * The path the page is served under, without its trailing slash: "" at the root, "/livekeep"
 * under `--public-url https://host.example/livekeep`. Every API path is prefixed with it.
 */
export const apiBase = new URL(".", document.baseURI).pathname.replace(/\/$/, "");

async function request<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(apiBase + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    // fetch only rejects when the server cannot be reached at all.
    throw new ApiError(0, "unreachable", "server unreachable");
  }
  const text = await response.text();
  const json = text ? safeParse(text) : undefined;
  if (!response.ok) {
    const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(response.status, error?.code ?? `http_${response.status}`, error?.message ?? response.statusText);
  }
  return json as T;
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export const api = {
  register: (username: string, password: string) =>
    request<Session>("POST", "/api/auth/register", { username, password }),
  login: (username: string, password: string) => request<Session>("POST", "/api/auth/login", { username, password }),
  feed: (cursor?: string | null, limit = 20) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return request<FeedPage>("GET", `/api/posts/?${query}`);
  },
  post: (id: number) => request<Post>("GET", `/api/posts/${id}/`),
  chat: (postId: number) => request<{ results: ChatMessage[] }>("GET", `/api/posts/${postId}/chat/`),
  sendChat: (liveId: number, body: string, token: string) =>
    request<ChatMessage>("POST", `/api/posts/live/${liveId}/chat/`, { body }, token),
};

/** The progressive WebM of a live in progress, starting near the live edge. */
export const liveStreamUrl = (liveId: number) => `${apiBase}/api/posts/live/${liveId}/stream`;

/** Server-Sent Events of a live: viewer counts, chat messages, and its end. */
export function liveEventsUrl(liveId: number, viewerId: string, asBroadcaster: boolean): string {
  const query = new URLSearchParams({ viewer_id: viewerId });
  if (asBroadcaster) query.set("as", "broadcaster");
  return `${apiBase}/api/posts/live/${liveId}/events?${query}`;
}
