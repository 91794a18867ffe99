// The HTTP API, one function per route. Every request rides on the HttpOnly session cookie
// (credentials: "same-origin"); the token itself is only ever sent once, to POST /session.

/** A non-2xx answer. `message` is the server's own sentence, meant to be shown as it is. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Fired when any call other than the sign-in itself answers 401: the session has ended.
export const events = new EventTarget();

/**
 * One call. `ownsAuthErrors` means the caller shows a 401 itself (sign-in, upload) instead of the
 * page switching straight to the sign-in form.
 */
async function request(method, path, { json, form, signal, ownsAuthErrors = false } = {}) {
  // X-Requested-With marks the call as the page's own: the server refuses a change made with the session
  // cookie without it or a same-origin Origin (a page of another origin cannot add it).
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", "X-Requested-With": "clients-import" }, signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form; // the browser writes the multipart boundary itself
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && !ownsAuthErrors) events.dispatchEvent(new Event("unauthorized"));
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : null;
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = `The server answered ${response.status} ${response.statusText}.`.replace(" .", ".");
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") message = body.message;
    else if (Array.isArray(body?.detail)) message = body.detail.map((d) => d.msg).filter(Boolean).join("; ") || message;
    if (body && typeof body.code === "string") code = body.code;
  } catch {
    // Not JSON (a proxy's error page, say): keep the generic sentence above.
  }
  return new ApiError(response.status, code, message);
}

export const getSession = () => request("GET", "/session", { ownsAuthErrors: true });
export const signIn = (token) => request("POST", "/session", { json: { token }, ownsAuthErrors: true });
export const signOut = () => request("DELETE", "/session");
export const getSettings = () => request("GET", "/settings");

export function listClients({ q = "", limit = 50, offset = 0, signal } = {}) {
  const query = new URLSearchParams({ q, limit: String(limit), offset: String(offset) });
  return request("GET", `/clients?${query}`, { signal });
}

/**
 * `mode` is one of the modes GET /settings lists; without one the server takes its default. `columnMap`
 * ({column: field or null}) and `mapping` (a saved mapping's name) say which column is which field.
 */
export function startImport(file, { dryRun = false, mode = "", columnMap = null, mapping = "" } = {}) {
  const form = uploadForm(file, { columnMap, mapping });
  if (dryRun) form.append("dry_run", "true");
  if (mode) form.append("mode", mode);
  // A 401 here is shown inside the modal, with the server's words and a way to sign in again.
  return request("POST", "/imports", { form, ownsAuthErrors: true });
}

/** What an import of the file would do, read by the server's own reader and rules: nothing is imported. */
export function previewImport(file, { columnMap = null, mapping = "" } = {}) {
  return request("POST", "/imports/preview", { form: uploadForm(file, { columnMap, mapping }), ownsAuthErrors: true });
}

function uploadForm(file, { columnMap, mapping }) {
  const form = new FormData();
  form.append("file", file, file.name);
  if (columnMap) form.append("column_map", JSON.stringify(columnMap));
  if (mapping) form.append("mapping", mapping);
  return form;
}

export const listMappings = () => request("GET", "/mappings");
export const saveMapping = (name, columns) =>
  request("PUT", `/mappings/${encodeURIComponent(name)}`, { json: { columns }, ownsAuthErrors: true });

export function getJob(id, statusUrl) {
  // Prefer the server's own status_url; fall back to the documented shape.
  const path = typeof statusUrl === "string" && statusUrl.startsWith("/") && !statusUrl.startsWith("//")
    ? statusUrl
    : `/imports/${encodeURIComponent(id)}`;
  return request("GET", path);
}

export const listImports = (limit = 20) => request("GET", `/imports?limit=${limit}`);

/** The rows a retry of an import may fix (of the import it retries, for a retry): GET /imports/{id}/retry. */
export const getRetryRows = (id) => request("GET", `/imports/${encodeURIComponent(id)}/retry`);

/** Corrected rows, [{row, values: {column: value}}], imported again as a retry of the import. */
export const retryRows = (id, rows) => request("POST", `/imports/${encodeURIComponent(id)}/retry`, { json: { rows } });
/** Undo an import: 202 with the undo job's `job_id` and `status_url`; 409 with the reason it cannot be. */
export const undoImport = (id) => request("POST", `/imports/${encodeURIComponent(id)}/undo`);
