// Going live from a Django page: the recorder uploads straight to Livekeep with a token this
// app mints (getToken asks again whenever Livekeep answers 401), and a live that a closed tab
// left behind is finished when the page opens again.
import { createLiveRecorder, resumePending } from "@livekeep/recorder";

const config = JSON.parse(document.getElementById("livekeep-config").textContent);
const preview = document.getElementById("preview");
const title = document.getElementById("title");
const startButton = document.getElementById("start");
const stopButton = document.getElementById("stop");
const status = document.getElementById("status");

async function getToken() {
  const response = await fetch(config.tokenUrl, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(`token: HTTP ${response.status}`);
  return (await response.json()).token;
}

const show = (text) => {
  status.textContent = text;
};

const labels = {
  starting: "Démarrage…",
  recording: "EN DIRECT",
  paused: "En pause",
  stopping: "Enregistrement…",
  saved: "Enregistrement sauvegardé.",
  failed: "Échec.",
};

let recorder;
let stream;

function release() {
  stream?.getTracks().forEach((track) => track.stop());
  preview.srcObject = null;
}

startButton.addEventListener("click", async () => {
  startButton.disabled = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    preview.srcObject = stream;
    recorder = await createLiveRecorder({
      apiBase: config.livekeepUrl,
      getToken,
      title: title.value.trim() || `Live de @${config.username}`,
      onStateChange: (state) => show(labels[state] ?? state),
      onError: (error) => {
        if (error.fatal) show(`Échec : ${error.message} (${error.code})`);
      },
    });
    await recorder.start(stream);
    stopButton.disabled = false;
  } catch (error) {
    show(`Échec : ${error.message ?? error}`);
    release();
    startButton.disabled = false;
  }
});

stopButton.addEventListener("click", async () => {
  stopButton.disabled = true;
  try {
    const videoData = await recorder.stop();
    show(`Enregistrement sauvegardé (${Math.round(videoData.duration)} s).`);
  } catch (error) {
    show(`Échec : ${error.message ?? error}`);
  } finally {
    release();
    startButton.disabled = false;
  }
});

resumePending({ apiBase: config.livekeepUrl, getToken }).then(
  (finished) => {
    if (finished.length > 0) show(`${finished.length} live(s) précédent(s) sauvegardé(s).`);
  },
  (error) => console.warn("resumePending:", error),
);
