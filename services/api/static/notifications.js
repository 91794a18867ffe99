// Finished imports, told twice: a toast that stays until dismissed (it may carry links a person
// needs, so it must not vanish on a timer) and an entry in the bell's list of recent ones.
import { byId, el, show } from "./dom.js";
import { outcome, tone, when } from "./format.js";
import { fixRowsButton } from "./fixrows.js";
import { reportLinks } from "./reports.js";

const MAX_TOASTS = 3;
const MAX_LISTED = 20;

const known = new Set(); // job ids already in the list, so a job is announced once
let unread = 0;
let held = null; // while the import modal is open: toasts waiting to be shown when it closes

export function initNotifications() {
  const button = byId("bell-button");
  const panel = byId("bell-panel");
  button.addEventListener("click", () => setOpen(panel.hidden));
  // Close on Escape or a click elsewhere, the way menus behave.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) {
      setOpen(false);
      button.focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (!panel.hidden && !panel.contains(event.target) && !button.contains(event.target)) setOpen(false);
  });
  renderCount();
}

function setOpen(open) {
  const panel = byId("bell-panel");
  show(panel, open);
  byId("bell-button").setAttribute("aria-expanded", String(open));
  if (open) {
    unread = 0; // seen
    renderCount();
  }
}

/** A job just finished: toast it and list it as new. */
export function notify(job) {
  if (known.has(job.job_id)) return;
  known.add(job.job_id);
  addToList(job, true);
  if (held) held.push(job);
  else toast(job);
}

/** Jobs that finished before this page was open: listed, not toasted, not counted as new. */
export function remember(jobs) {
  for (const job of [...jobs].reverse()) {
    if (known.has(job.job_id)) continue;
    known.add(job.job_id);
    addToList(job, false);
  }
}

/**
 * While the import modal is open it shows how its import ended, and a toast would sit on top of
 * its buttons: toasts wait, and appear when it closes.
 */
export function holdToasts(hold) {
  if (hold) {
    held = held || [];
    return;
  }
  const waiting = held || [];
  held = null;
  waiting.forEach(toast);
}

export function resetNotifications() {
  known.clear();
  unread = 0;
  held = null;
  byId("bell-list").replaceChildren();
  byId("toasts").replaceChildren();
  setOpen(false);
  renderCount();
}

function addToList(job, isNew) {
  const list = byId("bell-list");
  const item = el("li", { class: `bell-item tone-${tone(job)}` },
    el("p", { class: "bell-text" }, outcome(job)),
    el("p", { class: "bell-meta" }, when(job.finished_at || job.received_at)),
    el("p", { class: "links" }, reportLinks(job), fixRowsButton(job)));
  list.prepend(item);
  while (list.children.length > MAX_LISTED) list.lastElementChild.remove();
  if (isNew) unread += 1;
  renderCount();
}

function renderCount() {
  const badge = byId("bell-count");
  const button = byId("bell-button");
  badge.textContent = unread > 99 ? "99+" : String(unread);
  show(badge, unread > 0);
  button.setAttribute("aria-label", unread ? `Notifications, ${unread} new` : "Notifications");
  show(byId("bell-empty"), byId("bell-list").children.length === 0);
}

function toastTitle(job) {
  const undo = job.kind === "undo";
  if (tone(job) === "bad") return undo ? "Undo not done" : "Import not done";
  return undo ? "Undo finished" : "Import finished";
}

function toast(job) {
  const region = byId("toasts");
  const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss notification" }, "×");
  const node = el("div", { class: `toast tone-${tone(job)}`, role: "status" },
    el("p", { class: "toast-title" }, toastTitle(job)),
    el("p", { class: "toast-text" }, outcome(job)),
    el("p", { class: "links" }, reportLinks(job), fixRowsButton(job)),
    close);
  close.addEventListener("click", () => node.remove());
  region.append(node);
  while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
}
