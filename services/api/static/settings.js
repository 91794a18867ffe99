// What GET /settings returned: the page's one copy of the server's client fields, import modes,
// job statuses and file limits. Nothing else on the page spells those out; it all reads them here.

let current = null;

/** Keep the answer of GET /settings (app.js loads it before the history and the tracker need it). */
export function setSettings(settings) {
  current = settings || null;
}

export function getSettings() {
  return current;
}

/** The client fields in file order: [{name, label, required, default, max_length, note}]. */
export function fields() {
  return current?.fields || [];
}

/**
 * What a column can be taken as, in file order, then the whole-name column the server splits:
 * [{value, label, required}]. Each is a name a column map may give (GET /settings' column_map.targets).
 */
export function mapTargets() {
  const whole = current?.column_map?.full_name;
  const byName = new Map(fields().map((f) => [f.name, f]));
  const split = (whole?.splits_into || []).map((name) => byName.get(name)?.label || name);
  const targets = fields().map((f) => ({ value: f.name, label: f.label, required: f.required }));
  if (whole) targets.push({ value: whole.name, label: `whole name (split into ${split.join(", ")})`, required: false, splits: whole.splits_into });
  const allowed = new Set(current?.column_map?.targets || targets.map((t) => t.value));
  return targets.filter((t) => allowed.has(t.value));
}

/** The import modes: [{value, label, default}]. */
export function modes() {
  return current?.modes || [];
}

/** The mode the server takes when none is given; "" (send none) until the settings are in. */
export function defaultMode() {
  return modes().find((mode) => mode.default)?.value ?? "";
}

// A job the page gave up following because the server never showed it: the page's own state,
// not one of the server's statuses, so the page names it.
const LOST = { value: "lost", label: "Status unknown", heading: "The import's status is unknown", tone: "bad", running: false };

/** The server's description of a status, {value, label, heading, tone, running}; null if unknown. */
export function status(value) {
  if (value === LOST.value) return LOST;
  return (current?.statuses || []).find((known) => known.value === value) || null;
}

export const LOST_STATUS = LOST.value;
