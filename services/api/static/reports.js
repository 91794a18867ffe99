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
  if (job.rejected > 0 && errors) found.push(download(errors, "Download errors.csv", job, "errors"));
  if (written > 0 && results) found.push(download(results, "Download results.csv", job, "results"));
  return found;
}

function download(href, text, job, kind) {
  // The file name says which import it belongs to, so two downloads don't both become "errors.csv".
  const base = (job.file_name || "import").replace(/\.csv$/i, "");
  return el("a", { href, download: `${base}-${kind}.csv`, class: "report-link" }, text);
}
