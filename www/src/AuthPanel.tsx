import { useState, type FormEvent } from "react";
import { api, ApiError, type Session } from "./api";
import { errorMessage, t } from "./i18n";

/** Sign-up and log-in form; hands the session to the app. */
export function AuthPanel({ onSession }: { onSession: (session: Session) => void }) {
  const [mode, setMode] = useState<"register" | "login">("register");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const session = mode === "register" ? await api.register(username, password) : await api.login(username, password);
      onSession(session);
    } catch (e) {
      setError(e instanceof ApiError ? errorMessage(e.code, e.message) : errorMessage(undefined));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="panel auth" onSubmit={submit} aria-labelledby="auth-heading">
      <h2 id="auth-heading">{mode === "register" ? t.signUp : t.logIn}</h2>
      <div className="field">
        <label>
          {t.username}
          <input
            name="username"
            autoComplete="username"
            required
            minLength={1}
            maxLength={32}
            pattern="[A-Za-z0-9_.\-]+"
            title={t.usernameHint}
            aria-describedby={mode === "register" ? "username-hint" : undefined}
            value={username}
            onChange={(e) => setUsername(e.target.value)}
          />
        </label>
        {mode === "register" && (
          <small id="username-hint" className="hint">
            {t.usernameHint}
          </small>
        )}
      </div>
      <div className="field">
        <label>
          {t.password}
          <input
            name="password"
            type="password"
            autoComplete={mode === "register" ? "new-password" : "current-password"}
            required
            minLength={8}
            aria-describedby={mode === "register" ? "password-hint" : undefined}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {mode === "register" && (
          <small id="password-hint" className="hint">
            {t.passwordHint}
          </small>
        )}
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={busy}>
        {mode === "register" ? t.signUp : t.logIn}
      </button>
      <button type="button" className="link" onClick={() => setMode(mode === "register" ? "login" : "register")}>
        {mode === "register" ? t.haveAccount : t.noAccount}
      </button>
    </form>
  );
}
