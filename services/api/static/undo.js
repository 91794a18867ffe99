// "Undo import" in the imports history: a confirmation that says what will happen, in numbers, before
// anything is done; then the undo is a job like an import (progress in the history, a notification
// with conflicts.csv when some clients were changed since).
import * as api from "./api.js";
import { el } from "./dom.js";
import { count, isRunning, plural } from "./format.js";

let options = { track: () => {}, started: () => {} };
let open = null; // the confirmation shown: { dialog, opener }

/** `track(job, statusUrl)` follows the undo job; `started(job)` shows it in the history at once. */
export function initUndo(given) {
  options = { ...options, ...given };
}

/** Whether the server would take an undo of this job now (it decides; this only hides the button). */
export function canUndo(job) {
  return job.kind !== "undo" && !isRunning(job) && !job.dry_run && !job.undone_by && !job.undo_claimed_by
    && (job.created || 0) + (job.updated || 0) > 0 && Boolean(job.links?.undo);
}

/** The history row's button, or a note that the import was undone. */
export function undoControl(job) {
  if (job.undone_by) return el("span", { class: "tag" }, "undone");
  if (!canUndo(job)) return null;
  const button = el("button", { type: "button", class: "button small" }, "Undo import");
  button.addEventListener("click", () => confirmUndo(job, button));
  return button;
}

/** What the undo will do, in numbers: said before anything is done. */
export function consequences(job) {
  const parts = [];
  if (job.created) parts.push(`delete the ${plural(job.created, "client")} it created`);
  if (job.updated) parts.push(`give the ${plural(job.updated, "client")} it updated their earlier values back`);
  return `This will ${parts.join(" and ")}. Clients changed since by something else are kept as they are and listed in conflicts.csv.`;
}

function confirmUndo(job, opener) {
  closeConfirmation();
  const error = el("p", { class: "form-error", role: "alert", hidden: true });
  const cancel = el("button", { type: "button", class: "button" }, "Cancel");
  const confirm = el("button", { type: "button", class: "button primary" }, "Undo import");
  const title = `Undo the import of ${job.file_name}?`;
  const dialog = el("dialog", { class: "modal", "aria-labelledby": "undo-title" },
    el("div", { class: "modal-head" }, el("h2", { id: "undo-title" }, title)),
    el("div", { class: "modal-body" },
      el("p", { id: "undo-consequences" }, consequences(job)),
      el("p", { class: "muted" }, `${count(job.created || 0)} to delete · ${count(job.updated || 0)} to restore`),
      error,
      el("div", { class: "modal-actions" }, cancel, confirm)));
  cancel.addEventListener("click", closeConfirmation);
  dialog.addEventListener("close", () => closeConfirmation());
  confirm.addEventListener("click", () => startUndo(job, confirm, error));
  document.body.append(dialog);
  open = { dialog, opener };
  dialog.showModal(); // modal: focus stays inside, Escape closes
  cancel.focus();
}

async function startUndo(job, button, error) {
  button.disabled = true;
  try {
    const answer = await api.undoImport(job.job_id);
    const undoJob = { job_id: answer.job_id, status: answer.status, kind: "undo", undo_of: job.job_id,
                      file_name: job.file_name, received_at: new Date().toISOString(), links: {} };
    options.started(undoJob);
    options.track(undoJob, answer.status_url);
    closeConfirmation();
  } catch (failure) {
    error.textContent = failure.message; // the server's own sentence: already undone, too old, ...
    error.hidden = false;
    button.disabled = false;
  }
}

function closeConfirmation() {
  if (!open) return;
  const { dialog, opener } = open;
  open = null;
  if (dialog.open) dialog.close();
  dialog.remove();
  if (opener?.isConnected) opener.focus();
}
