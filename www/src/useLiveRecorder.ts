// The page's recorder hook is the package's (@livekeep/recorder/react). GoLive reads the
// duration through a function, `duration()`; this keeps that one name until it reads the
// package's `duration` value (or `getDuration()`) directly.
import { useLiveRecorder as usePackageRecorder, type UseLiveRecorderOptions } from "@livekeep/recorder/react";

export { load as loadRecorder } from "@livekeep/recorder";
export { resumePendingRecordings, type RecorderFailure } from "@livekeep/recorder/react";

export function useLiveRecorder(options: UseLiveRecorderOptions) {
  const recorder = usePackageRecorder(options);
  return { ...recorder, duration: recorder.getDuration };
}
