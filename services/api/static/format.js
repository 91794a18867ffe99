// Words and numbers for people: counts, sizes, dates and the one-sentence outcome of a job.

import { LOST_STATUS, status } from "./settings.js";

const numbers = new Intl.NumberFormat();
const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A job is running while its status says so (GET /settings); with no settings, until it has finished. */
export function isRunning(job) {
  const known = status(job.status);
  return known ? known.running : !job.finished_at;
}

export function count(n) {
  return numbers.format(Number(n) || 0);
}

/** "1 import", "2 imports". */
export function plural(n, word) {
  return `${count(n)} ${word}${n === 1 ? "" : "s"}`;
}

/** Bytes in the units people use for files: 10485760 -> "10 MB", 1536 -> "1.5 KB". */
export function size(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = unit === 0 ? String(value) : String(Math.round(value * 10) / 10);
  return `${shown} ${units[unit]}`;
}

/** A readable local date and time; the raw value when it is not a date at all. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dates.format(date);
}

export function fullName(client) {
  return [client.first_name, client.middle_name, client.last_name].filter(Boolean).join(" ");
}

export function statusLabel(value) {
  return status(value)?.label || String(value || "Unknown");
}

/** The heading over a job's outcome, from the server's statuses. */
export function heading(job) {
  return status(job.status)?.heading || "Import ended";
}

/**
 * How a job is going, for colour: the status's tone from the server (running, good, partial or
 * bad), and "partial" for a good one that still had rows rejected.
 */
export function tone(job) {
  const known = status(job.status)?.tone || (isRunning(job) ? "running" : job.reason ? "bad" : "good");
  return known === "good" && (job.rejected > 0 || job.conflicts > 0) ? "partial" : known;
}

/** The whole file was refused or the import never finished: there are no row counts to show. */
export function refusedWhole(job) {
  const known = status(job.status);
  return known ? known.tone === "bad" : Boolean(job.reason);
}

/**
 * The notification sentence, made by the server (job documents carry it as `message`), e.g.
 * "clients.csv imported: 2 created, 0 updated, 0 unchanged, 0 rejected." A stand-in the page made
 * before any document arrived says the file and its status.
 */
export function outcome(job) {
  if (job.message) return job.message;
  return `${job.file_name || "The file"}: ${statusLabel(job.status)}.`;
}

/** A job the server never showed (404 for a long while): the page stops following it and says so. */
export function lost(job) {
  const reason = { code: "lost", message: "its status could not be read from the server." };
  return { ...job, status: LOST_STATUS, reason, message: `${job.file_name || "The file"}: ${reason.message}` };
}

/** A short line of counts for tables: "2 created · 0 updated · 0 unchanged · 1 rejected". */
export function counts(job) {
  if (isRunning(job)) {
    return job.total ? `${count(job.processed)} of ${count(job.total)} rows` : "Reading the file…";
  }
  if (refusedWhole(job)) return job.reason?.message || "";
  if (job.kind === "undo") {
    return [`${count(job.deleted)} deleted`, `${count(job.restored)} restored`, `${count(job.conflicts)} conflicts`]
      .join(" · ");
  }
  return [
    `${count(job.created)} created`,
    `${count(job.updated)} updated`,
    `${count(job.unchanged)} unchanged`,
    `${count(job.rejected)} rejected`,
  ].join(" · ");
}
