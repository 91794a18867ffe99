// The report links of a finished job, shared by the toast, the bell, the modal and the history.
import { el, safePath } from "./dom.js";
import { isRunning } from "./format.js";

/**
 * Links worth offering: errors.csv only when rows were rejected, results.csv only when some
 * row got somewhere. A file rejected whole has neither: its reason is the whole story.
 */
export function reportLinks(job) {
  if (isRunning(job)) return [];
  const links = job.links || {};
  const written = (job.created || 0) + (job.updated || 0) + (job.unchanged || 0);
  const found = [];
  const errors = safePath(links.errors_csv);
  const results = safePath(links.results_csv);
  const conflicts = safePath(links.conflicts_csv);
  if (job.kind === "undo") {
    // An undo's rows are the import's it took back: its one report lists the clients it left as they are.
    if (job.conflicts > 0 && conflicts) found.push(download(conflicts, "Download conflicts.csv"));
    return found;
  }
  if (job.rejected > 0 && errors) found.push(download(errors, "Download errors.csv"));
  if (written > 0 && results) found.push(download(results, "Download results.csv"));
  return found;
}

function download(href, text) {
  // The server names the file (Content-Disposition: the upload's name, made safe, then -errors.csv or
  // -results.csv), so two downloads don't both become "errors.csv" and a hostile name never reaches the disk.
  return el("a", { href, download: true, class: "report-link" }, text);
}
