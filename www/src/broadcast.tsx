// The person's own live, owned by the app rather than by the recording panel: navigating to a
// replay or another live keeps it recording, and every page can show it and stop it.
import { createContext, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { pickMimeType, type VideoData } from "@livekeep/recorder";
import { resumePendingRecordings, useLiveRecorder, type LiveRecorderControls } from "@livekeep/recorder/react";
import { apiBase, type Session } from "./api";
import { errorMessage, t } from "./i18n";

/** What the app's pages see of the live: the recorder, its camera, and the actions. */
export interface Broadcast {
  recorder: LiveRecorderControls;
  /** The camera while a live uses it; undefined once it is released. */
  stream: MediaStream | undefined;
  /** Camera or start trouble the recorder never saw, as a message to show. */
  problem: string | undefined;
  /** Starting, on air, or saving: the live holds the camera. */
  active: boolean;
  /** Between "go live" and the recorder starting: opening the camera, choosing the format. */
  preparing: boolean;
  /** How many lives left behind by a closed tab were finished when the person came back. */
  recovered: number;
  /** Opens the camera and starts a live titled `title` (the default title when blank). */
  goLive(title: string): Promise<void>;
  /** Uploads the rest and ends the live; resolves once it is saved (undefined if it failed). */
  stop(): Promise<VideoData | undefined>;
}

const BroadcastContext = createContext<Broadcast | undefined>(undefined);

/** The live of the signed-in person, for any component under `BroadcastProvider`. */
export function useBroadcast(): Broadcast {
  const broadcast = useContext(BroadcastContext);
  if (!broadcast) throw new Error("useBroadcast needs a BroadcastProvider above it");
  return broadcast;
}

/** Maps getUserMedia's DOMException names to our error codes. */
function cameraErrorCode(error: unknown): string {
  const name = (error as { name?: string } | undefined)?.name;
  if (name === "NotAllowedError" || name === "SecurityError") return "camera_denied";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "no_camera";
  return "generic";
}

/** Turns the camera (and microphone) off. */
function release(stream: MediaStream | undefined) {
  stream?.getTracks().forEach((track) => track.stop());
}

interface BroadcastProviderProps {
  session: Session | undefined;
  /** A live started, was saved, or a left-behind one was finished: the feed should show it. */
  onFeedChange: () => void;
  children: ReactNode;
}

/** Runs the recorder for as long as the app is open; mount it above the routes. */
export function BroadcastProvider({ session, onFeedChange, children }: BroadcastProviderProps) {
  const recorder = useLiveRecorder({ token: session?.token ?? "", apiBase });
  const [stream, setStream] = useState<MediaStream | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  const [recovered, setRecovered] = useState(0);
  // A second "go live" while the camera opens (a double click, an impatient tap) must not start
  // a second live: a ref, because two clicks can land before React renders the first one.
  const [preparing, setPreparing] = useState(false);
  const preparingRef = useRef(false);
  const streamRef = useRef<MediaStream | undefined>(undefined);
  streamRef.current = stream;

  const { state } = recorder;
  const active = state === "starting" || state === "recording" || state === "paused" || state === "stopping";

  // Saved or failed: the camera is no longer needed. The hook releases it too; doing it here
  // keeps the light off on every path whatever the hook's options.
  useEffect(() => {
    if (state === "saved" || state === "failed") {
      release(streamRef.current);
      setStream(undefined);
    }
  }, [state]);

  // The app going away abandons the live to the recorder's journal; the camera goes off with it.
  useEffect(() => () => release(streamRef.current), []);

  // Recordings left behind by a closed tab are finished as soon as their owner is signed in.
  const token = session?.token;
  useEffect(() => {
    if (!token) return;
    let current = true;
    resumePendingRecordings(token, apiBase)
      .then((done) => {
        if (current && done.length > 0) {
          setRecovered(done.length);
          onFeedChange();
        }
      })
      .catch(() => undefined);
    return () => {
      current = false;
    };
  }, [token, onFeedChange]);

  const username = session?.user.username;
  const goLive = useCallback(
    async (title: string) => {
      if (!username || preparingRef.current) return;
      preparingRef.current = true;
      setPreparing(true);
      setProblem(undefined);
      try {
        let mime: string | undefined;
        try {
          mime = await pickMimeType();
        } catch {
          setProblem(errorMessage("generic"));
          return;
        }
        if (!mime) {
          setProblem(errorMessage("no_supported_format"));
          return;
        }
        let media: MediaStream;
        try {
          media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
        } catch (e) {
          setProblem(errorMessage(cameraErrorCode(e)));
          return;
        }
        setStream(media);
        try {
          await recorder.start(media, title.trim() || t.defaultLiveTitle(username));
          onFeedChange();
        } catch (e) {
          release(media);
          setStream(undefined);
          const code = (e as { code?: string }).code;
          setProblem(errorMessage(code === "network" ? "unreachable" : code, (e as Error).message));
        }
      } finally {
        preparingRef.current = false;
        setPreparing(false);
      }
    },
    [username, recorder.start, onFeedChange],
  );

  const stop = useCallback(async () => {
    try {
      const data = await recorder.stop();
      onFeedChange();
      return data;
    } catch {
      // The recorder holds the error (`recorder.error`), which the panel and the bar show.
      return undefined;
    }
  }, [recorder.stop, onFeedChange]);

  const value: Broadcast = { recorder, stream, problem, active, preparing, recovered, goLive, stop };
  return <BroadcastContext.Provider value={value}>{children}</BroadcastContext.Provider>;
}
