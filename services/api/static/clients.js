// The clients table: search (debounced), paging, and a reload when an import finishes.
import * as api from "./api.js";
import { byId, debounce, el, show } from "./dom.js";
import { count, fullName, when } from "./format.js";

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 300;

const state = { q: "", offset: 0, total: 0, exact: true, shown: 0 };
let inFlight = null; // the AbortController of the request whose answer we still want

export function initClients() {
  const search = byId("client-search");
  const runSearch = debounce(() => {
    state.q = search.value.trim();
    state.offset = 0;
    loadClients();
  }, SEARCH_DELAY_MS);
  search.addEventListener("input", runSearch);
  // The search form exists for Enter; it must never navigate.
  byId("client-search-form").addEventListener("submit", (event) => event.preventDefault());
  byId("clients-prev").addEventListener("click", () => turnPage(-1));
  byId("clients-next").addEventListener("click", () => turnPage(1));
  byId("clients-retry").addEventListener("click", () => loadClients());
}

function turnPage(direction) {
  state.offset = Math.max(0, state.offset + direction * PAGE_SIZE);
  loadClients();
}

/** Fetch the current page; an older answer that arrives late is dropped, never shown. */
export async function loadClients() {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  byId("clients-table").setAttribute("aria-busy", "true");
  try {
    const page = await api.listClients({ q: state.q, limit: PAGE_SIZE, offset: state.offset, signal: controller.signal });
    if (inFlight !== controller) return;
    // Deleted clients can leave us past the end; step back to the last page that has rows.
    if (page.items.length === 0 && state.offset > 0 && page.total > 0) {
      state.offset = Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE;
      return loadClients();
    }
    renderPage(page);
    show(byId("clients-error"), false);
  } catch (error) {
    if (error.name === "AbortError" || inFlight !== controller) return;
    byId("clients-error-text").textContent = `The clients could not be loaded: ${error.message}`;
    show(byId("clients-error"), true);
  } finally {
    if (inFlight === controller) byId("clients-table").removeAttribute("aria-busy");
  }
}

function renderPage(page) {
  const items = Array.isArray(page.items) ? page.items : [];
  state.total = Number(page.total) || 0;
  state.exact = page.total_exact !== false; // a search counts its first matches only
  state.shown = items.length;
  byId("clients-body").replaceChildren(...items.map(clientRow));
  renderEmpty(items.length === 0);
  renderPager();
}

// data-label names each cell for the phone layout, where rows stack as cards without a header row.
function clientRow(client) {
  return el("tr", {},
    el("th", { scope: "row" }, fullName(client)),
    el("td", { "data-label": "Email" }, client.email),
    el("td", { "data-label": "Username" }, client.username),
    el("td", { "data-label": "Project" }, client.project),
    el("td", { "data-label": "Desk" }, client.desk),
    el("td", { "data-label": "Type" }, client.type),
    el("td", { "data-label": "Last updated" }, el("time", { datetime: client.updated_at }, when(client.updated_at))));
}

function renderEmpty(empty) {
  const note = byId("clients-empty");
  note.textContent = state.q
    ? `No clients match “${state.q}”.`
    : "No clients yet. Use Import to add them from a CSV file.";
  show(note, empty);
}

function renderPager() {
  const first = state.shown ? state.offset + 1 : 0;
  const last = state.offset + state.shown;
  byId("clients-range").textContent = state.total
    ? `${count(first)}–${count(last)} of ${state.exact ? "" : "more than "}${count(state.total)}`
    : "0 clients";
  byId("clients-prev").disabled = state.offset === 0;
  byId("clients-next").disabled = last >= state.total;
}

/** Sign-out: nothing of the last person's data stays on the page. */
export function resetClients() {
  inFlight?.abort();
  inFlight = null;
  Object.assign(state, { q: "", offset: 0, total: 0, exact: true, shown: 0 });
  byId("client-search").value = "";
  byId("clients-body").replaceChildren();
  byId("clients-range").textContent = "";
  show(byId("clients-empty"), false);
  show(byId("clients-error"), false);
}
