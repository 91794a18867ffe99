// The Clients page: signs the person in, then wires the table, the imports and the notifications.
import * as api from "./api.js";
import { initClients, loadClients, resetClients } from "./clients.js";
import { byId, show } from "./dom.js";
import { initFixRows, showJobInFixRows } from "./fixrows.js";
import { isRunning, lost, plural } from "./format.js";
import { loadHistory, resetHistory, updateHistory } from "./history.js";
import { JobTracker } from "./jobs.js";
import { initImportModal, renderImportSettings, requirementsFailed, resetImportModal, showJobInModal } from "./modal.js";
import { holdToasts, initNotifications, notify, remember, resetNotifications } from "./notifications.js";
import { setSettings } from "./settings.js";
import { initUndo } from "./undo.js";

const tracker = new JobTracker();

function start() {
  byId("signin-form").addEventListener("submit", onSignIn);
  byId("signout").addEventListener("click", onSignOut);
  api.events.addEventListener("unauthorized", () => showSignIn("Your session has ended. Sign in again."));
  initClients();
  initNotifications();
  initImportModal({
    track: (job, statusUrl) => tracker.track(job, statusUrl),
    started: (job) => updateHistory(job),
    signInAgain: () => showSignIn("Sign in again to import."),
    // The modal shows the outcome itself; toasts wait so they never cover its buttons.
    opened: () => holdToasts(true),
    closed: () => holdToasts(false),
  });
  initFixRows({ track: (job, statusUrl) => tracker.track(job, statusUrl) });
  initUndo({ track: (job, statusUrl) => tracker.track(job, statusUrl), started: (job) => updateHistory(job) });
  followJobs();
  checkSession();
}

async function checkSession() {
  try {
    await api.getSession();
    showApp();
  } catch (error) {
    showSignIn(error.status === 401 ? "" : `The server could not be reached: ${error.message}`);
  }
}

// ---- signing in and out ----

async function onSignIn(event) {
  event.preventDefault();
  const input = byId("token");
  const token = input.value.trim();
  if (!token) {
    signInError("Enter your API token.");
    return;
  }
  const button = byId("signin-submit");
  button.disabled = true;
  try {
    await api.signIn(token);
    input.value = ""; // the cookie carries the session from here; the token leaves the page
    showApp();
  } catch (error) {
    signInError(error.status === 401 ? "That token is not valid." : `Signing in failed: ${error.message}`);
    input.select();
  } finally {
    button.disabled = false;
  }
}

async function onSignOut() {
  try {
    await api.signOut();
  } catch {
    // Even if the server could not be told, this page forgets everything and asks again.
  }
  showSignIn("You are signed out.");
}

function signInError(message) {
  const box = byId("signin-error");
  box.textContent = message;
  show(box, Boolean(message));
}

function showSignIn(message) {
  tracker.stop();
  resetImportModal();
  resetClients();
  resetHistory();
  resetNotifications();
  show(byId("app-view"), false);
  show(byId("boot"), false);
  show(byId("signin-view"), true);
  signInError("");
  const note = byId("signin-note");
  note.textContent = message || "";
  show(note, Boolean(message));
  byId("token").focus();
}

async function showApp() {
  show(byId("signin-view"), false);
  show(byId("boot"), false);
  show(byId("app-view"), true);
  byId("clients-heading").focus();
  loadClients();
  // The statuses (which are running, what they are called) come from /settings: the history and
  // the tracker read them, so they wait for it.
  await loadSettings();
  const jobs = await loadHistory();
  // Imports that were running before this page opened are followed too, so the header tells the truth.
  for (const job of jobs) if (isRunning(job)) tracker.track(job, job.links?.self);
  remember(jobs.filter((job) => !isRunning(job)));
}

async function loadSettings() {
  try {
    setSettings(await api.getSettings());
    renderImportSettings();
  } catch (error) {
    requirementsFailed(error.message);
  }
}

// ---- running imports ----

function followJobs() {
  tracker.addEventListener("update", (event) => {
    updateHistory(event.detail);
    showJobInModal(event.detail);
    showJobInFixRows(event.detail);
  });
  tracker.addEventListener("final", (event) => {
    notify(event.detail);
    loadClients();
    if (event.detail.kind === "undo") loadHistory(); // the import it took back now says so
  });
  tracker.addEventListener("count", (event) => renderRunning(event.detail));
  // A job the server never showed us (404 for a long while): say so rather than spin forever.
  tracker.addEventListener("lost", (event) => {
    const job = lost(event.detail.job);
    updateHistory(job);
    showJobInModal(job);
    notify(job);
  });
}

function renderRunning(running) {
  const indicator = byId("running");
  indicator.textContent = running ? `${plural(running, "import")} running` : "No imports running";
  indicator.classList.toggle("active", running > 0);
}

start();
