// "Fix rows": the rejected rows of an import in a grid, fixed in place and imported again as a retry
// (POST /imports/{id}/retry with only the edited rows). The rows, their columns and which field each
// column is come from GET /imports/{id}/retry; the limits and checks from GET /settings (settings.js):
// the simple checks here (required, length, email shape) help while typing, the server decides.
//
// Keyboard: arrow keys move between cells, Enter edits a cell (Enter again keeps the change), Escape
// cancels an edit, and Escape outside an edit closes the grid.
import * as api from "./api.js";
import { el, show } from "./dom.js";
import { isRunning, outcome } from "./format.js";
import { fields } from "./settings.js";

let hooks = { track: () => {} };
let state = null; // the grid open now: { dialog, jobId, rows, edits, table, status, button, retryId }

const READ_CACHE_MS = 600; // the API may answer the same read for 500 ms
const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export function initFixRows(options) {
  hooks = { ...hooks, ...options };
}

/** A "Fix rows" button for a finished job with rejected rows that wrote (no dry run) and was not undone,
 * else null (the server refuses a retry of an undone import: its rows were taken back). */
export function fixRowsButton(job) {
  if (isRunning(job) || !(job.rejected > 0) || job.dry_run || job.status === "rejected" || job.undone_by) return null;
  if (job.still_rejected === 0) return null;
  const button = el("button", { type: "button", class: "button small fix-rows", "aria-haspopup": "dialog" },
    "Fix rows");
  button.addEventListener("click", () => openFixRows(job, button));
  return button;
}

/** The tracker's word on the retry the grid started: its progress, then how it ended. */
export function showJobInFixRows(job) {
  if (!state || job.job_id !== state.retryId) return;
  if (isRunning(job)) {
    const done = (job.processed || 0), total = job.total || 0;
    state.status.textContent = total ? `Importing the fixed rows: ${done} of ${total}…` : "Importing the fixed rows…";
    return;
  }
  state.status.textContent = outcome(job);
  state.status.dataset.outcome = outcome(job);
  state.retryId = null;
  state.edits.clear();
  // The rows it fixed leave the grid; those still rejected stay, with what the server said this time.
  setTimeout(() => load(state?.dialog), READ_CACHE_MS);
}

async function openFixRows(job, opener) {
  const dialog = el("dialog", { class: "fix-dialog", "aria-labelledby": "fix-title" });
  const status = el("p", { class: "fix-status", role: "status" }, "Loading the rejected rows…");
  const button = el("button", { type: "button", class: "button primary", disabled: true }, "Import fixed rows");
  const close = el("button", { type: "button", class: "button" }, "Close");
  dialog.append(
    el("div", { class: "modal-head" }, el("h2", { id: "fix-title" }, `Fix rows of ${job.file_name}`)),
    el("p", { class: "muted fix-help" },
      "Use the arrow keys to move, Enter to edit a cell and Enter again to keep it, Escape to cancel. "
      + "Only the rows you change are imported again."),
    status,
    el("div", { class: "fix-scroll", tabindex: "-1" }),
    el("div", { class: "modal-actions" }, close, button));
  document.body.append(dialog);
  state = { dialog, jobId: job.job_id, rows: [], edits: new Map(), status, button, retryId: null, opener };
  close.addEventListener("click", () => dialog.close());
  button.addEventListener("click", importFixed);
  dialog.addEventListener("cancel", (event) => {
    if (dialog.querySelector(".cell-editor")) event.preventDefault(); // Escape ends the edit, not the grid
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (state?.dialog === dialog) state = null;
    opener?.focus();
  });
  dialog.showModal();
  await load(dialog);
}

async function load(dialog) {
  if (!dialog || state?.dialog !== dialog) return;
  const status = state.status;
  try {
    const found = await api.getRetryRows(state.jobId);
    if (state?.dialog !== dialog) return;
    state.jobId = found.job_id;
    state.fieldOf = Object.fromEntries(Object.entries(found.fields || {}).map(([field, column]) => [column, field]));
    state.rows = found.rows;
    state.edits.clear();
    state.button.disabled = true;
    const scroll = dialog.querySelector(".fix-scroll");
    if (!found.rows.length) {
      scroll.replaceChildren();
      status.textContent = [status.dataset.outcome, found.refusal?.message || "No rows are left to fix."]
        .filter(Boolean).join(" ");
      return;
    }
    const count = `${found.rows.length} rejected row${found.rows.length === 1 ? "" : "s"} left: fix the marked cells.`;
    status.textContent = [status.dataset.outcome, count].filter(Boolean).join(" ");
    scroll.replaceChildren(grid(found));
    focusCell(0, 1);
  } catch (error) {
    if (state?.dialog === dialog) status.textContent = `The rows could not be loaded: ${error.message}`;
  }
}

function grid(found) {
  const head = el("tr", {}, el("th", { scope: "col" }, "Row"),
    found.columns.map((column) => el("th", { scope: "col" }, column)));
  const body = found.rows.map((row, r) => el("tr", {},
    el("th", { scope: "row", role: "rowheader" }, String(row.row), rowProblems(row, found.columns)),
    found.columns.map((column, c) => cell(row, r, column, c + 1))));
  const table = el("table", { class: "data fix-grid", role: "grid", "aria-label": "Rejected rows",
    "aria-rowcount": String(found.rows.length + 1) }, el("thead", {}, head), el("tbody", {}, body));
  table.addEventListener("keydown", onKey);
  return table;
}

/** Problems of the row as a whole (too many values, say): shown under its number. */
function rowProblems(row, columns) {
  const messages = row.errors.filter((e) => !columns.includes(e.column)).map((e) => e.message);
  return messages.length ? el("span", { class: "cell-problem" }, messages.join(" ")) : null;
}

function cell(row, r, column, c) {
  const errors = row.errors.filter((e) => e.column === column);
  const td = el("td", { role: "gridcell", tabindex: "-1", "data-r": String(r), "data-c": String(c),
    "data-column": column, "data-label": column });
  td.addEventListener("dblclick", () => startEdit(td));
  td.addEventListener("click", () => focusCell(r, c));
  render(td, row.values[column] ?? "", errors.map((e) => e.message));
  return td;
}

/** A cell's value and its problems: the server's until it is edited, then the checks of what was typed. */
function render(td, value, problems, edited = false) {
  const id = `fix-${td.dataset.r}-${td.dataset.c}`;
  td.replaceChildren(el("span", { class: "cell-value" }, value === "" ? "—" : value));
  if (problems.length) td.append(el("span", { class: "cell-problem", id }, problems.join(" ")));
  td.classList.toggle("cell-error", problems.length > 0);
  td.classList.toggle("cell-edited", edited);
  if (problems.length) {
    td.setAttribute("aria-invalid", "true");
    td.setAttribute("aria-describedby", id);
  } else {
    td.removeAttribute("aria-invalid");
    td.removeAttribute("aria-describedby");
  }
}

function onKey(event) {
  const td = event.target.closest("td[role=gridcell]");
  if (!td || event.target.classList.contains("cell-editor")) return;
  const r = Number(td.dataset.r), c = Number(td.dataset.c);
  const moves = { ArrowUp: [r - 1, c], ArrowDown: [r + 1, c], ArrowLeft: [r, c - 1], ArrowRight: [r, c + 1] };
  if (moves[event.key]) {
    event.preventDefault();
    focusCell(...moves[event.key]);
  } else if (event.key === "Enter" || event.key === "F2") {
    event.preventDefault();
    startEdit(td);
  }
}

/** One cell of the grid is in the Tab order at a time (a roving tabindex): the one last moved to. */
function focusCell(r, c) {
  const target = state?.dialog.querySelector(`td[data-r="${r}"][data-c="${c}"]`);
  if (!target) return;
  for (const cell of state.dialog.querySelectorAll('td[tabindex="0"]')) cell.setAttribute("tabindex", "-1");
  target.setAttribute("tabindex", "0");
  target.focus();
}

function currentValue(td) {
  const row = state.rows[Number(td.dataset.r)];
  const edits = state.edits.get(row.row) || {};
  const column = td.dataset.column;
  return column in edits ? edits[column] : (row.values[column] ?? "");
}

function startEdit(td) {
  if (td.querySelector(".cell-editor")) return;
  const before = currentValue(td);
  const column = td.dataset.column;
  const input = el("input", { type: "text", class: "cell-editor", "aria-label": `${column}, row ${
    state.rows[Number(td.dataset.r)].row}`, spellcheck: "false", autocomplete: "off" });
  input.value = before;
  const hint = el("span", { class: "cell-problem", role: "alert" });
  td.replaceChildren(input, hint);
  const check = () => {
    const problems = checks(column, input.value);
    hint.textContent = problems.join(" ");
    input.setAttribute("aria-invalid", String(problems.length > 0));
    td.classList.toggle("cell-error", problems.length > 0);
  };
  input.addEventListener("input", check);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finishEdit(td, input.value);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      finishEdit(td, before);
    }
  });
  input.addEventListener("blur", () => {
    if (td.contains(input)) finishEdit(td, input.value, false);
  });
  check();
  input.focus();
  input.select();
}

function finishEdit(td, value, refocus = true) {
  const row = state.rows[Number(td.dataset.r)];
  const column = td.dataset.column;
  const original = row.values[column] ?? "";
  const edits = { ...(state.edits.get(row.row) || {}) };
  if (value === original) delete edits[column];
  else edits[column] = value;
  if (Object.keys(edits).length) state.edits.set(row.row, edits);
  else state.edits.delete(row.row);
  const edited = column in edits;
  const problems = edited ? checks(column, value) : row.errors.filter((e) => e.column === column).map((e) => e.message);
  render(td, value, problems, edited);
  state.button.disabled = state.edits.size === 0 || Boolean(state.retryId);
  if (refocus) td.focus();
}

/** The checks a person can be told while typing, from the field's settings: required, length, email shape. */
function checks(column, value) {
  const key = state.fieldOf[column];
  const field = fields().find((f) => f.name === key);
  if (!field) return [];
  const text = value.trim();
  const problems = [];
  if (field.required && !text) problems.push(`${field.label} is required.`);
  if (field.max_length && text.length > field.max_length) {
    problems.push(`${field.label} is ${text.length} characters; at most ${field.max_length}.`);
  }
  if (field.name === "email" && text && !EMAIL_SHAPE.test(text)) problems.push("This does not look like an email address.");
  return problems;
}

async function importFixed() {
  if (!state || state.edits.size === 0) return;
  const rows = [...state.edits].map(([row, values]) => ({ row, values }));
  state.button.disabled = true;
  state.status.textContent = `Sending ${rows.length} fixed row${rows.length === 1 ? "" : "s"}…`;
  try {
    const answer = await api.retryRows(state.jobId, rows);
    state.retryId = answer.job_id;
    state.status.textContent = "Importing the fixed rows…";
    hooks.track(answer, answer.status_url);
  } catch (error) {
    state.status.textContent = `The fixed rows were not imported: ${error.message}`;
    state.button.disabled = false;
  }
}
