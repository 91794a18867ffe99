// Words and numbers for people: counts, sizes, dates and the one-sentence outcome of a job.

const numbers = new Intl.NumberFormat();
const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export const RUNNING = new Set(["received", "processing"]);
export const isRunning = (job) => RUNNING.has(job.status);

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

const LABELS = {
  received: "Received",
  processing: "Importing",
  completed: "Completed",
  completed_with_errors: "Completed with errors",
  validated: "Checked (dry run)",
  rejected: "Not imported",
  failed: "Failed",
};

export function statusLabel(status) {
  return LABELS[status] || String(status || "Unknown");
}

/** How a final job went, for colour: "good", "partial" or "bad". */
export function tone(job) {
  if (job.status === "rejected" || job.status === "failed") return "bad";
  if (job.status === "completed_with_errors" || job.rejected > 0) return "partial";
  return "good";
}

/** The notification sentence, e.g. "clients.csv imported: 2 created, 0 updated, 0 unchanged, 0 rejected." */
export function outcome(job) {
  const name = job.file_name || "The file";
  if (job.status === "rejected") {
    return `${name} was not imported: ${job.reason?.message || "the file was refused."}`;
  }
  if (job.status === "failed") {
    return `${name} could not be imported: ${job.reason?.message || "the import did not finish."}`;
  }
  if (job.dry_run || job.status === "validated") {
    return `${name} checked, nothing written: ${count(job.created)} would be created, ` +
      `${count(job.updated)} would be updated, ${count(job.unchanged)} unchanged, ${count(job.rejected)} rejected.`;
  }
  return `${name} imported: ${count(job.created)} created, ${count(job.updated)} updated, ` +
    `${count(job.unchanged)} unchanged, ${count(job.rejected)} rejected.`;
}

/** A short line of counts for tables: "2 created · 0 updated · 0 unchanged · 1 rejected". */
export function counts(job) {
  if (isRunning(job)) {
    return job.total ? `${count(job.processed)} of ${count(job.total)} rows` : "Reading the file…";
  }
  if (job.status === "rejected" || job.status === "failed") return job.reason?.message || "";
  return [
    `${count(job.created)} created`,
    `${count(job.updated)} updated`,
    `${count(job.unchanged)} unchanged`,
    `${count(job.rejected)} rejected`,
  ].join(" · ");
}
