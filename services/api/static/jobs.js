// Follows running imports by polling GET /imports/{id} about every 500 ms, whether or not the
// import modal is open, and tells the page what changed:
//   "update" (detail: job) on every new job document,
//   "final"  (detail: job) once, when a job reaches a final status,
//   "count"  (detail: number of running jobs) whenever that number changes.
import * as api from "./api.js";
import { isRunning } from "./format.js";

const INTERVAL_MS = 500;
// Right after POST /imports a job may not be readable yet; give it this long before giving up.
const NOT_FOUND_GRACE_MS = 30_000;

export class JobTracker extends EventTarget {
  constructor() {
    super();
    this.running = new Map(); // job_id -> { job, statusUrl, since }
    this.timer = 0;
    this.busy = false;
  }

  get size() {
    return this.running.size;
  }

  /** Start following a job (a full job document, or the 202 answer of POST /imports). */
  track(job, statusUrl) {
    if (!job?.job_id || this.running.has(job.job_id)) return;
    this.running.set(job.job_id, { job, statusUrl, since: Date.now() });
    this.emit("count", this.running.size);
    this.schedule();
  }

  /** Forget everything (sign out). */
  stop() {
    clearTimeout(this.timer);
    this.timer = 0;
    this.running.clear();
    this.emit("count", 0);
  }

  schedule() {
    if (this.timer || this.busy || this.running.size === 0) return;
    this.timer = setTimeout(() => this.tick(), INTERVAL_MS);
  }

  async tick() {
    this.timer = 0;
    this.busy = true;
    try {
      await Promise.all([...this.running.keys()].map((id) => this.poll(id)));
    } finally {
      this.busy = false;
      // Waiting for the answers before the next round means a slow server is never flooded.
      this.schedule();
    }
  }

  async poll(id) {
    const entry = this.running.get(id);
    if (!entry) return;
    let job;
    try {
      job = await api.getJob(id, entry.statusUrl);
    } catch (error) {
      this.pollFailed(id, entry, error);
      return;
    }
    if (!this.running.has(id)) return; // signed out while the answer was on its way
    entry.job = job;
    this.emit("update", job);
    if (!isRunning(job)) {
      this.running.delete(id);
      this.emit("count", this.running.size);
      this.emit("final", job);
    }
  }

  pollFailed(id, entry, error) {
    if (error.status === 401) {
      this.stop(); // the page goes back to sign-in; nothing left to follow
      return;
    }
    const lost = error.status === 404 && Date.now() - entry.since > NOT_FOUND_GRACE_MS;
    if (lost) {
      this.running.delete(id);
      this.emit("count", this.running.size);
      this.emit("lost", { job: entry.job, error });
    }
    // Anything else (a network blip, a 5xx) is retried on the next round.
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
