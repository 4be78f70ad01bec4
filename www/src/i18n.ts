// French by default, English when the browser prefers it.

const fr = {
  appTagline: "Vos lives, gardés pour toujours",
  signUp: "Créer un compte",
  logIn: "Se connecter",
  logOut: "Se déconnecter",
  username: "Nom d'utilisateur",
  password: "Mot de passe",
  haveAccount: "Déjà un compte ? Se connecter",
  noAccount: "Pas de compte ? En créer un",
  goLiveHeading: "Passer en direct",
  liveTitle: "Titre du live",
  liveTitlePlaceholder: "De quoi parle ce live ?",
  goLive: "Passer en direct",
  pause: "Pause",
  resume: "Reprendre",
  stop: "Arrêter",
  recording: "En direct",
  paused: "En pause",
  starting: "Démarrage…",
  saving: "Enregistrement…",
  finalizing: "Finalisation de la vidéo…",
  recorded: "enregistrés",
  uploaded: "envoyés",
  saved: "Enregistrement sauvegardé dans le fil.",
  retrying: "Connexion perdue : la vidéo est gardée ici et l'envoi reprendra tout seul.",
  resumed: (n: number) => `${n} enregistrement(s) interrompu(s) récupéré(s).`,
  feed: "Fil",
  emptyFeed: "Aucune vidéo pour l'instant. Lancez le premier live !",
  loadMore: "Voir plus",
  recordedOn: (date: string, time: string) => `Enregistré le ${date} à ${time}`,
  liveBadge: "LIVE",
  liveNow: "EN DIRECT",
  interrupted: "interrompu",
  viewers: (n: number) => `${n} spectateur${n > 1 ? "s" : ""}`,
  messages: (n: number) => `${n} message${n > 1 ? "s" : ""}`,
  by: "par",
  signInToGoLive: "Connectez-vous pour passer en direct.",
  chat: "Chat",
  noMessages: "Pas encore de message.",
  chatInput: "Votre message",
  send: "Envoyer",
  liveEnded: "Le live est terminé.",
  back: "← Retour au fil",
  watch: "Regarder",
  errors: {
    live_ended: "Ce live est terminé : le chat est fermé.",
    rate_limited: "Vous envoyez trop de messages. Patientez un instant.",
    unauthenticated: "Connectez-vous pour écrire dans le chat.",
    camera_denied: "L'accès à la caméra a été refusé. Autorisez-le dans le navigateur puis réessayez.",
    no_camera: "Aucune caméra n'a été trouvée.",
    no_supported_format: "Ce navigateur ne sait enregistrer aucun format vidéo pris en charge.",
    unreachable: "Le serveur est injoignable. Vérifiez votre connexion.",
    invalid_credentials: "Nom d'utilisateur ou mot de passe incorrect.",
    username_taken: "Ce nom d'utilisateur est déjà pris.",
    generic: "Une erreur est survenue.",
  } as Record<string, string>,
};

type Strings = typeof fr;

const en: Strings = {
  appTagline: "Your lives, kept for good",
  signUp: "Sign up",
  logIn: "Log in",
  logOut: "Log out",
  username: "Username",
  password: "Password",
  haveAccount: "Have an account? Log in",
  noAccount: "No account? Sign up",
  goLiveHeading: "Go live",
  liveTitle: "Live title",
  liveTitlePlaceholder: "What is this live about?",
  goLive: "Go live",
  pause: "Pause",
  resume: "Resume",
  stop: "Stop",
  recording: "Live",
  paused: "Paused",
  starting: "Starting…",
  saving: "Saving…",
  finalizing: "Finalizing the video…",
  recorded: "recorded",
  uploaded: "uploaded",
  saved: "Recording saved to the feed.",
  retrying: "Connection lost: the video is kept here and the upload will resume by itself.",
  resumed: (n: number) => `${n} interrupted recording(s) recovered.`,
  feed: "Feed",
  emptyFeed: "No videos yet. Start the first live!",
  loadMore: "Load more",
  recordedOn: (date: string, time: string) => `Recorded on ${date} at ${time}`,
  liveBadge: "LIVE",
  liveNow: "LIVE NOW",
  interrupted: "interrupted",
  viewers: (n: number) => `${n} viewer${n === 1 ? "" : "s"}`,
  messages: (n: number) => `${n} message${n === 1 ? "" : "s"}`,
  by: "by",
  signInToGoLive: "Log in to go live.",
  chat: "Chat",
  noMessages: "No messages yet.",
  chatInput: "Your message",
  send: "Send",
  liveEnded: "This live has ended.",
  back: "← Back to the feed",
  watch: "Watch",
  errors: {
    live_ended: "This live has ended: its chat is closed.",
    rate_limited: "You are sending too many messages. Wait a moment.",
    unauthenticated: "Log in to write in the chat.",
    camera_denied: "Camera access was denied. Allow it in the browser and try again.",
    no_camera: "No camera was found.",
    no_supported_format: "This browser cannot record any supported video format.",
    unreachable: "The server cannot be reached. Check your connection.",
    invalid_credentials: "Wrong username or password.",
    username_taken: "This username is already taken.",
    generic: "Something went wrong.",
  },
};

function preferredLanguage(): "fr" | "en" {
  for (const lang of navigator.languages ?? [navigator.language]) {
    const base = lang.toLowerCase().split("-")[0];
    if (base === "fr") return "fr";
    if (base === "en") return "en";
  }
  return "fr";
}

export const lang = preferredLanguage();
export const locale = lang === "fr" ? "fr-FR" : "en-GB";
export const t: Strings = lang === "fr" ? fr : en;

/** The message a person should read for an error code, falling back to the server's text. */
export function errorMessage(code: string | undefined, fallback?: string): string {
  return (code && t.errors[code]) || fallback || t.errors.generic;
}
