import { useCallback, useState } from "react";
import type { Session } from "./api";
import { AuthPanel } from "./AuthPanel";
import { Feed } from "./Feed";
import { GoLive } from "./GoLive";
import { t } from "./i18n";
import { LiveView } from "./LiveView";
import { Replay } from "./Replay";
import { useRoute } from "./route";

const SESSION_KEY = "livekeep.session";

function storedSession(): Session | undefined {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    return raw ? (JSON.parse(raw) as Session) : undefined;
  } catch {
    return undefined;
  }
}

export function App() {
  const [session, setSession] = useState<Session | undefined>(storedSession);
  const [feedVersion, setFeedVersion] = useState(0);

  const signIn = useCallback((s: Session) => {
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    setSession(s);
  }, []);
  const signOut = useCallback(() => {
    void fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${storedSession()?.token ?? ""}` } }).catch(() => undefined);
    localStorage.removeItem(SESSION_KEY);
    setSession(undefined);
  }, []);
  const refreshFeed = useCallback(() => setFeedVersion((v) => v + 1), []);
  const route = useRoute();

  return (
    <>
      <header className="top">
        <h1>
          <a href="#/">Livekeep</a> <small>{t.appTagline}</small>
        </h1>
        {session && (
          <div className="who">
            <span data-testid="whoami">@{session.user.username}</span>
            <button type="button" className="link" onClick={signOut}>
              {t.logOut}
            </button>
          </div>
        )}
      </header>
      <main>
        {route.page !== "home" && (
          <a className="back" href="#/">
            {t.back}
          </a>
        )}
        {route.page === "live" && <LiveView key={route.id} liveId={route.id} session={session} />}
        {route.page === "post" && <Replay key={route.id} postId={route.id} />}
        {route.page === "home" && (
          <>
            {session ? <GoLive session={session} onSaved={refreshFeed} onStarted={refreshFeed} /> : <AuthPanel onSession={signIn} />}
            <Feed version={feedVersion} />
          </>
        )}
      </main>
    </>
  );
}
