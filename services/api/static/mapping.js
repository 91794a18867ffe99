// The import modal's mapping step and preview: which column of the file is which client field, then the
// first rows as they will be imported and the counts of a dry run, before the person confirms.
// Everything shown comes from the server's preview (POST /imports/preview), which reads the file with the
// uploader's own reader and checks rows with the validator's own rules: the page never guesses a field,
// a problem or a count. Only the mark of what is still missing follows the choices as they are made.
import * as api from "./api.js";
import { byId, el, show } from "./dom.js";
import { count, isRunning } from "./format.js";
import { fields, mapTargets } from "./settings.js";

const state = {
  file: null,
  preview: null, // the server's last answer for the columns shown
  choices: [], // per column of the header: the field chosen, or null (ignored)
  touched: new Set(), // columns whose field the person chose
  mapping: "", // the saved mapping in use ("" for none)
  saved: [], // GET /mappings
  dryRunJob: null, // the dry run whose counts the preview shows
  checked: null, // the choice the rows shown were previewed with: what the dry run and Import send, exactly
  busy: false, // a request of this step is under way: its controls wait for it
};
let hooks = { view: () => {}, importWith: () => {}, follow: () => {}, back: () => {} };

export function initMapping(options) {
  hooks = { ...hooks, ...options };
  byId("map-saved").addEventListener("change", (event) => useSaved(event.target.value));
  byId("map-offer-use").addEventListener("click", () => useSaved(byId("map-offer-use").dataset.name));
  byId("map-columns").addEventListener("change", onChoice);
  byId("map-save").addEventListener("submit", onSave);
  byId("map-back").addEventListener("click", () => hooks.back());
  byId("map-next").addEventListener("click", () => checkRows());
  byId("check-back").addEventListener("click", () => hooks.view("map"));
  byId("check-import").addEventListener("click", importChecked);
}

/** Show the mapping step for a file, from the server's preview of it. */
export async function beginMapping(file, preview) {
  state.file = file;
  state.mapping = "";
  state.dryRunJob = null;
  state.checked = null;
  byId("map-save-name").value = "";
  byId("map-save-status").textContent = "";
  byId("map-heading").textContent = `Match the columns of ${file.name}`;
  takePreview(preview);
  hooks.view("map");
  await loadSaved();
}

/** The column map and the saved mapping an import of the file is sent with. */
export function currentChoice() {
  return { columnMap: columnMap(state.mapping ? "server" : "header"), mapping: state.mapping };
}

/** Every job update: the dry run the preview started shows its counts when it is ready. */
export function showDryRun(job) {
  if (!state.dryRunJob || job.job_id !== state.dryRunJob) return false;
  renderDryRun(job);
  return true;
}

export function resetMapping() {
  state.file = null;
  state.preview = null;
  state.dryRunJob = null;
  state.checked = null;
}

// ---- the columns ----

function takePreview(preview) {
  state.preview = preview;
  state.choices = preview.columns.map((column) => column.field);
  state.touched = new Set();
  renderColumns();
  renderMissing();
  showMapError(preview.needs_mapping && preview.refused && !preview.missing.length ? preview.refused.message : "");
}

function renderColumns() {
  const targets = mapTargets();
  const items = state.preview.columns.map((column, index) => {
    const id = `map-field-${index}`;
    const named = column.name !== "";
    const samples = column.samples.filter((s) => s !== "");
    const select = el("select", { id, "data-index": index, "aria-describedby": `map-samples-${index} map-state-${index}`,
      disabled: !named },
    el("option", { value: "" }, "Ignore"),
    ...targets.map((t) => el("option", { value: t.value }, t.required ? `${t.label} (required)` : t.label)));
    select.value = state.choices[index] ?? "";
    return el("li", { class: "map-column", "data-state": stateOf(index) },
      el("div", { class: "map-name" },
        el("label", { for: id }, named ? column.name : `Column ${index + 1} (no name)`),
        el("span", { class: "samples", id: `map-samples-${index}` },
          samples.length ? samples.map((s) => el("span", { class: "sample" }, s)) : el("span", { class: "muted" }, "no values"))),
      el("div", { class: "map-choice" }, select,
        el("span", { class: "map-state", id: `map-state-${index}` }, stateText(index))));
  });
  byId("map-columns").replaceChildren(...items);
}

function stateOf(index) {
  if (state.choices[index] === null) return "ignored";
  return state.touched.has(index) ? "chosen" : (state.preview.columns[index].by || "chosen");
}

function stateText(index) {
  return {
    ignored: "Ignored: not imported",
    header: "Recognised from its name",
    map: state.mapping ? `From the mapping “${state.mapping}”` : "Mapped",
    chosen: "Your choice",
  }[stateOf(index)];
}

function onChoice(event) {
  const index = Number(event.target.dataset.index);
  if (Number.isNaN(index)) return;
  state.choices[index] = event.target.value || null;
  state.touched.add(index);
  const item = event.target.closest(".map-column");
  item.dataset.state = stateOf(index);
  byId(`map-state-${index}`).textContent = stateText(index);
  renderMissing();
  showMapError(""); // what the server said was about the choices before this one
}

/** The required fields no column is chosen for, and any field two columns are chosen for. */
function problems() {
  const targets = mapTargets();
  const chosen = state.choices.filter(Boolean);
  const covered = new Set(chosen);
  for (const t of targets) if (covered.has(t.value)) for (const part of t.splits || []) covered.add(part);
  const missing = targets.filter((t) => t.required && !covered.has(t.value));
  const twice = targets.filter((t) => chosen.filter((c) => c === t.value).length > 1);
  return { missing, twice };
}

function renderMissing() {
  const { missing, twice } = problems();
  const line = byId("map-missing");
  const looksLike = new Map((state.preview.missing || []).map((m) => [m.field, m.looks_like]));
  const said = missing.map((t) => {
    const like = (looksLike.get(t.value) || []).filter((name) => state.choices[columnIndex(name)] === null);
    return like.length ? `${t.label} (the column “${like.join("”, “")}” looks like it)` : t.label;
  });
  const parts = [];
  if (said.length) parts.push(`Still missing: ${said.join("; ")}.`);
  if (twice.length) parts.push(`Chosen for two columns: ${twice.map((t) => t.label).join(", ")}. Choose one column each.`);
  line.textContent = parts.length ? parts.join(" ") : "Every required field has a column.";
  line.dataset.tone = parts.length ? "bad" : "good";
}

function columnIndex(name) {
  return state.preview.columns.findIndex((c) => c.name === name);
}

/**
 * The named columns whose field the server would not give them by itself, each with its field or null; with
 * the server's own match of the others, that is the whole choice, so the server does exactly what the list
 * shows. Only those, so that a wide file's map fits the form (its column_map field is bounded, upload.py).
 * `over` is what the server already does: "header" (a column recognised from its name, and an unknown one
 * ignored, need no entry; what a saved mapping is made of), or "server" (nor one the saved mapping in use
 * gives, as the preview said: by "map"). A column whose field another entry gives is sent too, so that the
 * server says when two columns have the same field. (A name the header has twice is sent only when a field
 * is chosen for it: the server refuses a map it cannot place, and says so.) Built with Object.fromEntries:
 * a column may be named "__proto__".
 */
function columnMap(over = "header") {
  const columns = state.preview.columns;
  const names = columns.map((c) => c.name);
  const known = (column) => column.by === "header" || column.by === null || (over === "server" && column.by === "map");
  const differs = (index) => !known(columns[index]) || state.choices[index] !== columns[index].field;
  const changed = new Set(names.map((_, index) => index).filter(differs).map((index) => state.choices[index]));
  const entries = [];
  names.forEach((name, index) => {
    if (!name) return;
    const choice = state.choices[index];
    if (!differs(index) && !(choice !== null && changed.has(choice))) return;
    const repeated = names.indexOf(name) !== names.lastIndexOf(name);
    if (repeated && choice === null) return;
    entries.push([name, choice]);
  });
  return Object.fromEntries(entries);
}

function showMapError(message) {
  byId("map-error").textContent = message;
  show(byId("map-error"), Boolean(message));
}

// ---- saved mappings ----

async function loadSaved() {
  try {
    state.saved = (await api.listMappings()).items || [];
  } catch {
    state.saved = []; // the step works without them: nothing to offer
  }
  renderSaved();
}

function renderSaved() {
  const select = byId("map-saved");
  select.replaceChildren(el("option", { value: "" }, "None: match by the column names"),
    ...state.saved.map((m) => el("option", { value: m.name }, `${m.name} (version ${m.version})`)));
  select.value = state.mapping;
  const fitting = state.mapping ? null : state.saved.find(fits);
  show(byId("map-offer"), Boolean(fitting));
  if (fitting) {
    byId("map-offer-text").textContent = `The saved mapping “${fitting.name}” fits this file's columns.`;
    byId("map-offer-use").dataset.name = fitting.name;
    byId("map-offer-use").setAttribute("aria-label", `Use the saved mapping ${fitting.name}`);
  }
}

/**
 * A saved mapping worth offering: every column it gives a field is in this file's header as written (as the
 * page saves them). Only an offer: taking it asks the server, whose preview says whether it fits.
 */
function fits(saved) {
  const header = new Set(state.preview.columns.map((c) => c.name));
  const given = Object.entries(saved.columns || {}).filter(([, field]) => field !== null);
  return given.length > 0 && given.every(([column]) => header.has(column.trim()));
}

/** Take a saved mapping (or none): the server previews the file under it, and its answer is shown. */
async function useSaved(name) {
  if (state.busy) return;
  showMapError("");
  const file = state.file;
  let preview;
  setBusy(true);
  try {
    preview = await api.previewImport(file, { mapping: name || "" });
  } catch (error) {
    showMapError(error.message);
    byId("map-saved").value = state.mapping;
    return;
  } finally {
    setBusy(false);
  }
  if (file !== state.file) return; // another file since
  state.mapping = name || "";
  takePreview(preview);
  renderSaved();
  byId("map-saved").focus();
}

async function onSave(event) {
  event.preventDefault();
  const name = byId("map-save-name").value.trim();
  const status = byId("map-save-status");
  status.dataset.tone = "bad";
  if (!name) {
    status.textContent = "Give the mapping a name first.";
    byId("map-save-name").focus();
    return;
  }
  try {
    const saved = await api.saveMapping(name, columnMap("header"));
    state.mapping = saved.name;
    status.dataset.tone = "good";
    status.textContent = `Saved as “${saved.name}” (version ${saved.version}). It is offered for your next file.`;
  } catch (error) {
    status.textContent = error.message; // the server's own words: a bad name, too many mappings
    return;
  }
  await loadSaved();
}

// ---- the preview of the rows, and the dry run's counts ----

/** Whether two choices are the same: what the rows shown were previewed with, and what would be sent now. */
function sameChoice(a, b) {
  return a.mapping === b.mapping && JSON.stringify(a.columnMap) === JSON.stringify(b.columnMap);
}

/**
 * The step's controls wait while one of its requests is under way: a choice changed meanwhile would not be the
 * one the answer is about, and a second click would start a second preview. (Controls disabled for another
 * reason, a column without a name, stay so.)
 */
function setBusy(busy) {
  state.busy = busy;
  const controls = [...byId("map-view").querySelectorAll("select, button, input"), byId("check-import")];
  for (const control of controls) {
    if (busy && !control.disabled) {
      control.disabled = true;
      control.dataset.waiting = "";
    } else if (!busy && "waiting" in control.dataset) {
      control.disabled = false;
      delete control.dataset.waiting;
    }
  }
  byId("map-view").setAttribute("aria-busy", String(busy));
}

async function checkRows() {
  if (state.busy) return;
  showMapError("");
  const file = state.file;
  const choice = currentChoice();
  let preview;
  setBusy(true);
  try {
    preview = await api.previewImport(file, choice);
  } catch (error) {
    showMapError(error.message);
    byId("map-error").focus();
    return;
  } finally {
    setBusy(false);
  }
  // An answer about another file, or other choices, is not shown (the controls waited, so this is a guard).
  if (file !== state.file || !sameChoice(choice, currentChoice())) return;
  state.checked = choice;
  if (preview.needs_mapping) { // which column is which field does not fit yet: the server says why, here
    showMapError(preview.refused.message);
    byId("map-error").focus();
    return;
  }
  renderCheck(preview);
  hooks.view("check");
  if (!preview.refused) startDryRun(choice);
}

/** Import with the very choice the rows shown were previewed with, once. */
function importChecked() {
  const choice = state.checked;
  if (!choice || state.busy) return;
  state.checked = null; // a second click imports nothing more
  byId("check-import").disabled = true;
  hooks.importWith(state.file, choice);
}

function renderCheck(preview) {
  byId("check-heading").textContent = `Check ${state.file.name}`;
  const refused = preview.refused;
  byId("check-refused").textContent = refused ? `The file would not be imported: ${refused.message}` : "";
  show(byId("check-refused"), Boolean(refused));
  show(byId("check-table"), !refused);
  show(byId("check-import"), !refused);
  byId("check-import").disabled = false;
  show(byId("check-dry-run"), !refused);
  byId("check-counts").replaceChildren();
  show(byId("check-counts"), false);
  byId("check-dry-run-text").textContent = "";
  if (refused) {
    byId("check-summary").textContent = "Go back to the columns and change what the message says.";
    return;
  }
  const rejected = preview.rows.filter((r) => !r.accepted).length;
  const all = preview.rows.length === preview.total;
  const rows = `${count(preview.total)} row${preview.total === 1 ? "" : "s"} in the file`;
  const shownRows = all ? `${rows}, shown as ${preview.total === 1 ? "it" : "they"} will be imported` : `${rows}. The first ${count(preview.rows.length)} are shown as they will be imported`;
  const bad = rejected === 1 ? "1 of them has a problem and would be rejected" : `${count(rejected)} of them have problems and would be rejected`;
  byId("check-summary").textContent = rejected ? `${shownRows}: ${bad}.` : `${shownRows}.`;
  const shown = shownFields(preview);
  byId("check-head").replaceChildren(el("th", { scope: "col" }, "Line"),
    ...shown.map((f) => el("th", { scope: "col" }, f.label)), el("th", { scope: "col" }, "Problems"));
  byId("check-body").replaceChildren(...preview.rows.map((row) => rowOf(row, shown)));
}

/** The fields some column gives (a whole-name column gives its parts). */
function shownFields(preview) {
  const given = new Set(preview.columns.map((c) => c.field).filter(Boolean));
  for (const t of mapTargets()) if (given.has(t.value)) for (const part of t.splits || []) given.add(part);
  return fields().filter((f) => given.has(f.name));
}

function rowOf(row, shown) {
  const marked = new Set(row.errors.map((e) => e.field).filter(Boolean));
  const cells = shown.map((f) => {
    const value = row.values[f.name];
    const bad = marked.has(f.name);
    return el("td", { "data-label": f.label, class: bad ? "problem" : null },
      value ?? el("span", { class: "muted" }, "—"), bad ? el("span", { class: "mark" }, " (problem)") : null);
  });
  const problemsCell = el("td", { "data-label": "Problems" },
    row.errors.length ? el("ul", { class: "problems" }, row.errors.map((e) => el("li", {}, e.message))) : "—");
  return el("tr", { class: row.accepted ? "accepted" : "rejected" },
    el("th", { scope: "row" }, el("span", { class: "stack-label" }, "Line "), `${count(row.line)} `,
      el("span", { class: "row-state" }, row.accepted ? "ok" : "rejected")),
    ...cells, problemsCell);
}

async function startDryRun(choice) {
  const text = byId("check-dry-run-text");
  text.textContent = "Checking every row with a dry run (nothing is written)…";
  state.dryRunJob = null;
  const file = state.file;
  let answer;
  try {
    answer = await api.startImport(file, { dryRun: true, ...choice });
  } catch (error) {
    if (state.checked === choice) text.textContent = `The dry run could not start: ${error.message}`;
    return;
  }
  if (file !== state.file || state.checked !== choice) return; // another file, or another preview, since
  state.dryRunJob = answer.job_id;
  const job = { job_id: answer.job_id, status: answer.status, file_name: file.name, dry_run: true, total: null,
    processed: 0, received_at: new Date().toISOString() };
  hooks.follow(job, answer.status_url);
}

function renderDryRun(job) {
  const text = byId("check-dry-run-text");
  if (isRunning(job)) {
    const total = Number(job.total) || 0;
    text.textContent = total
      ? `Checking every row with a dry run… ${count(job.processed || 0)} of ${count(total)}`
      : "Checking every row with a dry run (nothing is written)…";
    return;
  }
  text.textContent = `Dry run of every row: ${job.message || ""}`;
  const pairs = [["Would be created", job.created], ["Would be updated", job.updated], ["Unchanged", job.unchanged],
    ["Rejected", job.rejected]];
  byId("check-counts").replaceChildren(...pairs.map(([label, value]) =>
    el("div", { class: "count" }, el("dt", {}, label), el("dd", {}, count(value || 0)))));
  show(byId("check-counts"), true);
}
