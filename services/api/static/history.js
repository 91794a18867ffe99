// "Recent imports": the last 20 jobs, kept current by the tracker's updates.
import * as api from "./api.js";
import { byId, el, show } from "./dom.js";
import { counts, statusLabel, tone, when } from "./format.js";
import { fixRowsButton } from "./fixrows.js";
import { reportLinks } from "./reports.js";
import { undoControl } from "./undo.js";

const LIMIT = 20;
const jobs = new Map(); // job_id -> job document
const rows = new Map(); // job_id -> { tr, signature } so unchanged rows are left alone

/** Load the list; returns the jobs so the page can follow the running ones. */
export async function loadHistory() {
  try {
    const page = await api.listImports(LIMIT);
    jobs.clear();
    for (const job of page.items || []) jobs.set(job.job_id, job);
    show(byId("history-error"), false);
    render();
    return [...jobs.values()];
  } catch (error) {
    byId("history-error").textContent = `Recent imports could not be loaded: ${error.message}`;
    show(byId("history-error"), true);
    return [];
  }
}

/** A job changed (or is new): show its latest document. */
export function updateHistory(job) {
  jobs.set(job.job_id, { ...jobs.get(job.job_id), ...job });
  render();
}

export function resetHistory() {
  jobs.clear();
  rows.clear();
  byId("history-body").replaceChildren();
  show(byId("history-empty"), false);
  show(byId("history-error"), false);
}

function newestFirst(a, b) {
  return String(b.received_at || "").localeCompare(String(a.received_at || ""));
}

function render() {
  const ordered = [...jobs.values()].sort(newestFirst).slice(0, LIMIT);
  const body = byId("history-body");
  const wanted = ordered.map((job) => rowFor(job));
  // Re-rendering only changed rows keeps keyboard focus on a report link while polling updates others.
  wanted.forEach((tr, index) => {
    if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
  });
  while (body.children.length > wanted.length) body.lastElementChild.remove();
  for (const id of rows.keys()) if (!jobs.has(id)) rows.delete(id);
  show(byId("history-empty"), ordered.length === 0);
}

function rowFor(job) {
  const signature = JSON.stringify(job);
  const known = rows.get(job.job_id);
  if (known && known.signature === signature) return known.tr;
  const tr = historyRow(job);
  if (known) known.tr.replaceWith(tr);
  rows.set(job.job_id, { tr, signature });
  return tr;
}

function historyRow(job) {
  // The label and the tone (running, good, partial, bad) are the status's own, from GET /settings.
  return el("tr", {},
    el("th", { scope: "row" }, job.file_name, job.dry_run ? el("span", { class: "tag" }, "dry run") : null,
      job.kind === "undo" ? el("span", { class: "tag" }, "undo") : null),
    el("td", { "data-label": "Status" },
      el("span", { class: `badge-status tone-${tone(job)}`, "data-status": job.status }, statusLabel(job.status))),
    el("td", { "data-label": "Rows", class: "counts-cell" }, counts(job)),
    el("td", { "data-label": "By" }, job.requested_by),
    el("td", { "data-label": "Received" }, el("time", { datetime: job.received_at }, when(job.received_at))),
    el("td", { "data-label": "Reports" }, el("span", { class: "links" }, reportLinks(job), undoControl(job)),
      fixRowsButton(job)));
}
