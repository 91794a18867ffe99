// Tiny DOM helpers. Everything from the server goes in as text (textContent or attributes),
// never as markup, so a client named "<img onerror=...>" is just a funny name.

/**
 * Make an element: el("a", {href: "/x", class: "link"}, "text", otherNode).
 * `null`/`undefined`/`false` attributes and children are skipped, which keeps call sites flat.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Append strings (as text) and nodes, flattening nested arrays. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** document.getElementById that fails loudly: a missing id is a bug in index.html, not a runtime state. */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html has no element #${id}`);
  return node;
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

/**
 * A same-origin path from the server, or null. Links come from job documents; accepting only
 * "/something" keeps "javascript:" or another site out of an href even if the data were odd.
 */
export function safePath(value) {
  return typeof value === "string" && value.startsWith("/") && !value.startsWith("//") ? value : null;
}

/** Call `fn` once the caller has stopped calling for `ms` (used by the search box). */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
