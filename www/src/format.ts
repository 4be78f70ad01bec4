// Presentation of durations and dates, as the feed shows them.

/** `01:30` under an hour, `1:02:03` from an hour on; `--:--` when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "--:--";
  // Whole seconds elapsed, as video players count them.
  const total = Math.floor(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

/** Day and time in the viewer's zone: `23/07/2025` and `15:30`. */
export function splitDateTime(iso: string, locale: string): { date: string; time: string } {
  const d = new Date(iso);
  const date = d.toLocaleDateString(locale, { day: "2-digit", month: "2-digit", year: "numeric" });
  // `hourCycle: "h23"`, not `hour12: false`, which shows 24:05 past midnight in some locales.
  const time = d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  return { date, time };
}

/** `12.3 Mo` style sizes. */
export function formatBytes(bytes: number, locale: string): string {
  const units = locale.startsWith("fr") ? ["o", "Ko", "Mo", "Go"] : ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toLocaleString(locale, { maximumFractionDigits: unit === 0 ? 0 : 1 })} ${units[unit]}`;
}
