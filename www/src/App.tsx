import { useCallback, useState } from "react";
import { apiBase, type Session } from "./api";
import { AuthPanel } from "./AuthPanel";
import { BroadcastProvider, useBroadcast } from "./broadcast";
import { Feed } from "./Feed";
import { GoLive } from "./GoLive";
import { t } from "./i18n";
import { LiveView } from "./LiveView";
import { OnAirBar } from "./OnAirBar";
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
    void fetch(`${apiBase}/api/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${storedSession()?.token ?? ""}` } }).catch(() => undefined);
    localStorage.removeItem(SESSION_KEY);
    setSession(undefined);
  }, []);
  const refreshFeed = useCallback(() => setFeedVersion((v) => v + 1), []);

  // The live belongs to the app, above the routes: moving between pages keeps it recording.
  // Another account starts afresh (signing out is only possible once the live ended).
  return (
    <BroadcastProvider key={session?.user.id ?? "signed-out"} session={session} onFeedChange={refreshFeed}>
      <Shell session={session} feedVersion={feedVersion} onSignIn={signIn} onSignOut={signOut} />
    </BroadcastProvider>
  );
}

interface ShellProps {
  session: Session | undefined;
  feedVersion: number;
  onSignIn: (session: Session) => void;
  onSignOut: () => void;
}

/** The header, the on-air bar and the page the address names. */
function Shell({ session, feedVersion, onSignIn, onSignOut }: ShellProps) {
  const route = useRoute();
  const { recorder, active, stop } = useBroadcast();
  const [signingOut, setSigningOut] = useState(false);

  // Signing out while live ends the live first, as Stop would: the recording is saved under
  // the account that made it, and the camera goes off. If the stop fails, the person stays
  // signed in and sees why.
  async function signOut() {
    if (active) {
      if (!window.confirm(t.signOutWhileLive)) return;
      setSigningOut(true);
      const saved = await stop();
      setSigningOut(false);
      if (!saved) return;
    }
    onSignOut();
  }

  const busy = signingOut || recorder.state === "starting" || recorder.state === "stopping";
  return (
    <>
      <header className="top">
        <h1>
          <a href="#/">Livekeep</a> <small>{t.appTagline}</small>
        </h1>
        {session && (
          <div className="who">
            <span data-testid="whoami">@{session.user.username}</span>
            <button type="button" className="link" onClick={() => void signOut()} disabled={busy}>
              {t.logOut}
            </button>
          </div>
        )}
      </header>
      {route.page !== "home" && <OnAirBar />}
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
            {session ? <GoLive session={session} /> : <AuthPanel onSession={onSignIn} />}
            <Feed version={feedVersion} />
          </>
        )}
      </main>
    </>
  );
}
