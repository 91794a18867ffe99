// The import modal ("Wants to import clients?"): requirements, attach or drop a file, upload,
// follow the job, and show how it ended. Closing it never stops an import: the tracker keeps
// following the job and the notification tells the person when it is done.
import * as api from "./api.js";
import { byId, el, show } from "./dom.js";
import { count, heading, isRunning, outcome, refusedWhole, size, tone } from "./format.js";
import { beginMapping, initMapping, resetMapping, showDryRun } from "./mapping.js";
import { reportLinks } from "./reports.js";
import { defaultMode, fields, getSettings, modes } from "./settings.js";

const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";
const ERRORS_SHOWN = 10;

const state = {
  view: "form", // "form" | "map" | "check" | "progress" | "outcome"
  file: null, // the File chosen and passing the quick checks
  problem: "", // why the last file chosen was refused, repeated if Start is pressed anyway
  jobId: null, // the job this modal follows
  reading: false, // the server is previewing the file chosen
};
let hooks = { track: () => {}, started: () => {}, signInAgain: () => {}, opened: () => {}, closed: () => {} };

export function initImportModal(options) {
  hooks = { ...hooks, ...options };
  byId("import-button").addEventListener("click", openImportModal);
  for (const button of byId("import-dialog").querySelectorAll("[data-close]")) {
    button.addEventListener("click", closeImportModal);
  }
  // A click on the dimmed backdrop closes, but not the end of a text selection dragged out of the dialog.
  let pressedOnBackdrop = false;
  byId("import-backdrop").addEventListener("mousedown", (event) => {
    pressedOnBackdrop = event.target === event.currentTarget;
  });
  byId("import-backdrop").addEventListener("click", (event) => {
    if (pressedOnBackdrop && event.target === event.currentTarget) closeImportModal();
  });
  document.addEventListener("keydown", onKeydown);
  document.addEventListener("focusin", keepFocusInside);
  byId("import-file").addEventListener("change", (event) => {
    choose([...event.target.files]);
    event.target.value = ""; // so choosing the same file again still counts as a change
  });
  byId("import-form").addEventListener("submit", submit);
  byId("import-review").addEventListener("click", () => submit(null, true));
  initMapping({
    view: (view) => setView(view),
    back: () => setView("form", byId("import-review")),
    importWith: (file, choice) => upload(file, choice),
    follow: (job, statusUrl) => {
      hooks.started(job);
      hooks.track(job, statusUrl);
    },
  });
  byId("import-again").addEventListener("click", () => {
    resetForm();
    setView("form", byId("import-file"));
  });
  byId("import-signin").addEventListener("click", () => hooks.signInAgain());
  initDropZone();
}

/**
 * The requirements and the modes come from GET /settings (settings.js), so the modal states the
 * limits the server enforces and offers the modes it takes.
 */
export function renderImportSettings() {
  renderRequirements(getSettings());
  renderModes(modes());
}

export function isModalOpen() {
  return !byId("import-backdrop").hidden;
}

export function openImportModal() {
  if (isModalOpen()) return;
  // A finished import stays visible until the modal is closed; a new visit starts afresh.
  if (state.view === "outcome") {
    resetForm();
    setView("form");
  }
  show(byId("import-backdrop"), true);
  byId("app-shell").inert = true; // the page behind is out of reach, for mouse, keyboard and screen readers
  document.body.classList.add("modal-open");
  byId("import-title").focus();
  hooks.opened();
}

export function closeImportModal() {
  if (!isModalOpen()) return;
  show(byId("import-backdrop"), false);
  byId("app-shell").inert = false;
  document.body.classList.remove("modal-open");
  byId("import-button").focus();
  hooks.closed();
}

/** Sign-out: forget the file and the job. */
export function resetImportModal() {
  if (isModalOpen()) closeImportModal();
  state.jobId = null;
  resetForm();
  setView("form");
}

/** Every job update from the tracker; only the one this modal follows is shown here. */
export function showJobInModal(job) {
  if (showDryRun(job)) return;
  if (job.job_id !== state.jobId) return;
  if (isRunning(job)) renderProgress(job);
  else {
    renderOutcome(job);
    setView("outcome");
  }
}

// ---- keyboard: Escape closes, Tab and Shift+Tab cycle inside the dialog ----

function onKeydown(event) {
  if (!isModalOpen()) return;
  if (event.key === "Escape") {
    event.preventDefault();
    closeImportModal();
  } else if (event.key === "Tab") {
    event.preventDefault();
    moveFocus(event.shiftKey);
  }
}

function focusables() {
  const dialog = byId("import-dialog");
  return [...dialog.querySelectorAll(FOCUSABLE)].filter(
    (node) => !node.closest("[hidden]") && node.getClientRects().length > 0,
  );
}

/** The next (or previous) focusable control in document order, wrapping at either end. */
function moveFocus(backwards) {
  const items = focusables();
  if (items.length === 0) return;
  const active = document.activeElement;
  const isAfter = (node) => active.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING;
  const isBefore = (node) => node !== active && !node.contains(active) &&
    active.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_PRECEDING;
  const next = backwards
    ? items.filter(isBefore).at(-1) ?? items.at(-1)
    : items.find((node) => node !== active && isAfter(node)) ?? items[0];
  next.focus();
}

function keepFocusInside(event) {
  if (!isModalOpen()) return;
  const inside = byId("import-dialog").contains(event.target) || byId("toasts").contains(event.target);
  if (!inside) byId("import-title").focus();
}

// ---- choosing a file ----

function initDropZone() {
  const zone = byId("drop-zone");
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    choose([...event.dataTransfer.files]);
  });
  // A file dropped next to the zone would make the browser open it and leave the page.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (hasFiles(event) && !zone.contains(event.target)) event.preventDefault();
    });
  }
}

function choose(files) {
  showFormError("");
  if (files.length === 0) return;
  if (files.length > 1) {
    state.file = null;
    renderChosen();
    state.problem = "Attach one file at a time.";
    showFormError(state.problem);
    return;
  }
  state.problem = quickCheck(files[0]) || "";
  state.file = state.problem ? null : files[0];
  renderChosen();
  showFormError(state.problem);
}

/** The checks the browser can make without uploading; the server makes them all again anyway. */
function quickCheck(file) {
  if (!/\.csv$/i.test(file.name)) {
    return `“${file.name}” is not a CSV file. Choose a file whose name ends in .csv.`;
  }
  const max = getSettings()?.max_bytes;
  if (max && file.size > max) {
    return `“${file.name}” is ${size(file.size)}, larger than the ${size(max)} a file can be. Split it into smaller files.`;
  }
  return null;
}

function renderChosen() {
  const line = byId("file-chosen");
  if (state.file) line.textContent = `Attached: ${state.file.name} (${size(state.file.size)})`;
  else line.textContent = "No file attached yet.";
  byId("drop-zone").classList.toggle("has-file", Boolean(state.file));
}

function showFormError(message) {
  const box = byId("import-error");
  byId("import-error-text").textContent = message;
  show(box, Boolean(message));
  show(byId("import-signin"), false);
}

function resetForm() {
  resetMapping();
  state.file = null;
  state.problem = "";
  byId("import-dry-run").checked = false;
  byId("import-mode").value = defaultMode();
  renderChosen();
  showFormError("");
}

// ---- uploading and following ----

/**
 * Start: the server previews the file first. A file whose columns need matching goes to the mapping step
 * (and so does any file when the person asks to match its columns); any other is imported at once.
 */
async function submit(event, review = false) {
  event?.preventDefault();
  if (!state.file) {
    showFormError(state.problem || "Attach a CSV file first.");
    byId("import-file").focus();
    return;
  }
  if (state.reading) return;
  const file = state.file;
  state.reading = true;
  byId("file-chosen").textContent = `Reading the columns of ${file.name}…`;
  let preview;
  try {
    preview = await api.previewImport(file);
  } catch (error) {
    uploadFailed(error);
    return;
  } finally {
    state.reading = false;
    renderChosen();
  }
  if (file !== state.file) return; // another file was chosen meanwhile
  if (preview.needs_mapping || (review && preview.columns.length > 0)) await beginMapping(file, preview);
  else await upload(file, {});
}

/** Upload the file for good, with the form's options and the columns' map (if the mapping step gave one). */
async function upload(file, { columnMap = null, mapping = "" }) {
  const dryRun = byId("import-dry-run").checked;
  const mode = byId("import-mode").value;
  state.jobId = null;
  renderUploading(file, dryRun);
  setView("progress");
  let answer;
  try {
    answer = await api.startImport(file, { dryRun, mode, columnMap, mapping });
  } catch (error) {
    uploadFailed(error);
    return;
  }
  // Until the first poll answers, this stand-in lets the history list it at the top.
  const job = {
    job_id: answer.job_id, status: answer.status, file_name: file.name,
    dry_run: dryRun, mode, total: null, processed: 0, received_at: new Date().toISOString(),
  };
  state.jobId = job.job_id;
  state.file = null;
  resetMapping();
  renderProgress(job);
  hooks.started(job);
  hooks.track(job, answer.status_url);
}

function uploadFailed(error) {
  setView("form");
  showFormError(error.message); // the server's own words, e.g. 413 or 415
  if (error.status === 401) show(byId("import-signin"), true);
  if (isModalOpen()) byId("import-error").focus();
}

function renderUploading(file, dryRun) {
  byId("progress-heading").textContent = `${dryRun ? "Checking" : "Importing"} ${file.name}`;
  byId("progress-text").textContent = `Uploading ${file.name}…`;
  setBar(null, null);
}

function renderProgress(job) {
  const verb = job.dry_run ? "Checking" : "Importing";
  byId("progress-heading").textContent = `${verb} ${job.file_name}`;
  const total = Number(job.total) || 0;
  if (total > 0) {
    const done = Math.min(Number(job.processed) || 0, total);
    byId("progress-text").textContent = `${verb}… ${count(done)} of ${count(total)} rows`;
    setBar(done, total);
  } else {
    byId("progress-text").textContent = "Reading the file…";
    setBar(null, null);
  }
}

/** The bar's fill is scaled, not resized, so progress never reflows the dialog. */
function setBar(done, total) {
  const bar = byId("progress-bar");
  const fill = bar.firstElementChild;
  if (total === null) {
    bar.classList.add("indeterminate");
    bar.removeAttribute("aria-valuenow");
    bar.removeAttribute("aria-valuetext");
    bar.setAttribute("aria-valuemax", "100");
    fill.style.transform = "";
    return;
  }
  const wasIndeterminate = bar.classList.contains("indeterminate");
  bar.classList.remove("indeterminate");
  bar.setAttribute("aria-valuemax", String(total));
  bar.setAttribute("aria-valuenow", String(done));
  bar.setAttribute("aria-valuetext", `${count(done)} of ${count(total)} rows`);
  // Coming out of the sweeping animation, jump straight to the value: an animated start would
  // briefly draw a fill that is not the real progress.
  if (wasIndeterminate) fill.style.transition = "none";
  fill.style.transform = `scaleX(${total ? done / total : 0})`;
  if (wasIndeterminate) {
    void fill.offsetWidth; // apply the jump before transitions come back
    fill.style.transition = "";
  }
}

function renderOutcome(job) {
  const view = byId("outcome-view");
  view.dataset.tone = tone(job);
  byId("outcome-heading").textContent = heading(job);
  byId("outcome-text").textContent = outcome(job);
  const wholeFileRefused = refusedWhole(job);
  byId("outcome-counts").replaceChildren(...(wholeFileRefused ? [] : countItems(job)));
  show(byId("outcome-counts"), !wholeFileRefused);
  renderWarnings(job.warnings || [], Number(job.warnings_more) || 0);
  renderErrors(job);
  const links = reportLinks(job);
  byId("outcome-links").replaceChildren(...links);
  show(byId("outcome-links"), links.length > 0);
}

function countItems(job) {
  const would = job.dry_run ? "Would be " : "";
  const pairs = [
    [`${would}created`, job.created], [`${would}updated`, job.updated],
    ["Unchanged", job.unchanged], ["Rejected", job.rejected],
  ];
  return pairs.map(([label, value]) => el("div", { class: "count" },
    el("dt", {}, label.charAt(0).toUpperCase() + label.slice(1)), el("dd", {}, count(value))));
}

function renderWarnings(warnings, more) {
  const list = byId("outcome-warnings");
  const items = warnings.map((w) => el("li", {}, w.message));
  if (more > 0) items.push(el("li", {}, `and ${count(more)} more warning${more === 1 ? "" : "s"}`));
  list.replaceChildren(...items);
  show(list, warnings.length > 0);
}

function renderErrors(job) {
  const errors = Array.isArray(job.errors) ? job.errors : [];
  const shown = errors.slice(0, ERRORS_SHOWN);
  byId("outcome-errors-body").replaceChildren(...shown.map((e) => el("tr", {},
    el("td", {}, count(e.line)), el("td", {}, e.field || "—"), el("td", {}, e.message))));
  const more = (job.rejected || 0) > 0 && errors.length > 0
    ? "The first problems are listed; errors.csv has every rejected row with its reasons."
    : "";
  byId("outcome-errors-more").textContent = more;
  show(byId("outcome-errors"), shown.length > 0);
}

/**
 * Switch views. When the control that had focus disappears, focus goes to the new view's
 * heading rather than falling out of the dialog.
 */
function setView(view, focusTarget) {
  state.view = view;
  show(byId("form-view"), view === "form");
  show(byId("map-view"), view === "map");
  show(byId("check-view"), view === "check");
  show(byId("progress-view"), view === "progress");
  show(byId("outcome-view"), view === "outcome");
  if (!isModalOpen()) return;
  const active = document.activeElement;
  const lost = !active || active === document.body || active.closest("[hidden]");
  if (focusTarget) focusTarget.focus();
  else if (lost) byId(view === "form" ? "import-title" : `${view}-heading`).focus();
}

// ---- requirements ----

function renderRequirements(settings) {
  const rows = [
    ["File format", "CSV only (the file name ends in .csv)."],
    ["Size", `No more than ${count(settings.max_records)} records and ${size(settings.max_bytes)} per file.`],
    ["Security restrictions", "No scripts, macros, or executable content."],
    ["Formatting", formattingText(settings)],
  ];
  byId("requirements").replaceChildren(...rows.flatMap(([term, detail]) => [el("dt", {}, term), el("dd", {}, detail)]));
}

/** Required and optional columns as two lines, in the help page's style, from the server's fields. */
function formattingText(settings) {
  const all = fields();
  const required = all.filter((f) => f.required).map((f) => column(f.name, fieldNote(f, settings)));
  const optional = all.filter((f) => !f.required).map((f) => column(f.name, fieldNote(f, settings)));
  return [
    el("p", { class: "columns" }, "Required: ", joined(required), "."),
    el("p", { class: "columns" }, "Optional: ", joined(optional), "."),
  ];
}

function fieldNote(field, settings) {
  if (field.note) return field.note;
  // The field whose default is a client type takes one of the client types.
  const types = settings.client_types || [];
  const choices = types.length && types.includes(field.default) ? `${types.join(" or ")}; ` : "";
  const fallback = field.default !== null && field.default !== undefined ? `default: ${field.default}` : "";
  return `${choices}${fallback}`;
}

function column(name, note) {
  return [el("code", {}, name), note ? ` (${note})` : ""];
}

function joined(items) {
  return items.flatMap((item, index) => (index ? [", ", item] : [item]));
}

export function requirementsFailed(message) {
  byId("requirements").replaceChildren(el("dt", {}, "Requirements"),
    el("dd", {}, `The limits could not be loaded (${message}). The server still checks every file.`));
  // No modes to offer: the upload sends none and the server takes its default.
  renderModes([{ value: "", label: "The server's default", default: true }]);
}

// ---- modes ----

/** The "When a client already exists" choices, as GET /settings lists them, the default chosen. */
function renderModes(list) {
  const select = byId("import-mode");
  select.replaceChildren(...list.map((mode) => el("option", { value: mode.value }, mode.label)));
  select.value = list.find((mode) => mode.default)?.value ?? list[0]?.value ?? "";
}
