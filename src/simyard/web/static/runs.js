// The runs list: the column chooser (the choice kept in this browser's localStorage), the
// selection that leads to compare, and the rows kept live from GET /api/v1/runs.
"use strict";

(() => {
  const table = document.getElementById("runs");
  const COLUMNS_KEY = "simyard.runs.columns";

  // ------------------------------------------------------------------ column chooser
  const chooser = document.getElementById("column-chooser");
  function saved() {
    try {
      return JSON.parse(localStorage.getItem(COLUMNS_KEY) || "{}");
    } catch {
      return {};
    }
  }
  function showColumn(key, shown) {
    for (const cell of table.querySelectorAll(`[data-col="${CSS.escape(key)}"]`)) {
      cell.hidden = !shown;
    }
  }
  const choice = saved();
  for (const box of chooser.querySelectorAll("input[data-col]")) {
    const key = box.dataset.col;
    if (key in choice) box.checked = Boolean(choice[key]);
    showColumn(key, box.checked);
    box.addEventListener("change", () => {
      const now = saved();
      now[key] = box.checked;
      localStorage.setItem(COLUMNS_KEY, JSON.stringify(now));
      showColumn(key, box.checked);
    });
  }
  chooser.hidden = false;

  // ------------------------------------------------------------------ compare selection
  const button = document.getElementById("compare-selected");
  const count = document.getElementById("compare-count");
  const most = Number(button.dataset.max || 10);
  function picked() {
    return [...table.querySelectorAll('input[name="run"]:checked')];
  }
  function showSelection() {
    const n = picked().length;
    button.disabled = n < 2 || n > most;
    button.textContent = n >= 2 ? `Compare ${n} runs` : "Compare selected";
    count.textContent =
      n > most ? `At most ${most} runs can be compared; ${n} are ticked.`
        : n === 1 ? "1 run ticked: tick at least one more."
          : n === 0 ? `Tick 2 to ${most} runs to compare them.` : "";
  }
  table.addEventListener("change", (event) => {
    if (event.target.name === "run") showSelection();
  });
  showSelection();

  // ------------------------------------------------------------------ live rows
  const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
  const TASK_ENDED = new Set([...FINAL, "skipped", "cached"]);
  const rows = () => [...table.querySelectorAll("tbody tr[data-run]")];

  /** Like the server's duration(): "3.2 s", "4 min 05 s", "1 h 02 min". */
  function duration(start, end) {
    if (!start) return "";
    const seconds = Math.max(((end ? new Date(end) : new Date()) - new Date(start)) / 1000, 0);
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60), sec = Math.floor(seconds % 60);
    if (minutes < 60) return `${minutes} min ${String(sec).padStart(2, "0")} s`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  function progressOf(run) {
    if (run.state !== "running" || run.tasks.length === 0) return null;
    const done = run.tasks.reduce(
      (sum, t) => sum + (TASK_ENDED.has(t.state) ? 100 : t.progress || 0), 0);
    return done / run.tasks.length;
  }

  function showRun(row, run) {
    row.dataset.state = run.state;
    const cell = row.querySelector('[data-cell="state"]');
    const badge = document.createElement("span");
    badge.className = `state ${run.state}`;
    badge.textContent = run.state;
    const parts = [badge];
    const states = new Set(run.tasks.map((t) => t.state));
    if (run.state === "running" && !states.has("running") && states.has("queued")) {
      const waiting = document.createElement("span");
      waiting.className = "muted small waiting";
      waiting.textContent = "waiting for a slot";
      parts.push(document.createTextNode(" "), waiting);
    }
    const pct = progressOf(run);
    if (pct !== null) {
      const bar = document.createElement("progress");
      bar.className = "bar";
      bar.max = 100;
      bar.value = Math.round(pct);
      bar.title = `${Math.round(pct)} %`;
      parts.push(document.createTextNode(" "), bar);
    }
    cell.replaceChildren(...parts);
    const queuedEnd = run.started_at || (FINAL.has(run.state) ? run.finished_at : null);
    row.querySelector('[data-cell="queued"]').textContent = duration(run.created_at, queuedEnd);
    row.querySelector('[data-cell="ran"]').textContent = duration(run.started_at, run.finished_at);
    for (const metric of row.querySelectorAll("[data-metric]")) {
      const value = run.metrics ? run.metrics[metric.dataset.metric] : undefined;
      metric.textContent = value === undefined || value === null ? "" : String(value);
    }
  }

  let delay = 2000;
  async function poll() {
    const open = rows().filter((row) => !FINAL.has(row.dataset.state));
    const news = document.getElementById("runs-news");
    const first = rows()[0];
    const watchNew = first && !table.dataset.before && !table.dataset.filtered;
    if (open.length === 0 && !watchNew) return; // nothing on this page can change
    const ids = rows().map((row) => Number(row.dataset.run));
    const newest = Math.max(...ids);
    const oldest = Math.min(...ids);
    const before = table.dataset.before ? Number(table.dataset.before) : null;
    const span = Math.min((before ?? newest + 1) - oldest + (watchNew ? 20 : 0), 500);
    const query = new URLSearchParams({ limit: String(Math.max(span, 1)) });
    if (before !== null) query.set("before", String(before));
    try {
      const answer = await fetch(`/api/v1/runs?${query}`, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (answer.ok) {
        const runs = await answer.json();
        const byId = new Map(runs.map((run) => [run.id, run]));
        for (const row of rows()) {
          const run = byId.get(Number(row.dataset.run));
          if (run && (run.state !== row.dataset.state || !FINAL.has(run.state))) showRun(row, run);
        }
        const fresh = runs.filter((run) => run.id > newest).length;
        if (watchNew && fresh > 0) {
          const link = document.createElement("a");
          link.href = window.location.pathname + window.location.search;
          link.textContent = "show them";
          news.replaceChildren(
            document.createTextNode(`${fresh} new run${fresh === 1 ? "" : "s"} since this page was loaded: `),
            link);
          news.hidden = false;
        }
        delay = 2000;
      } else {
        delay = Math.min(delay * 2, 30000);
      }
    } catch {
      delay = Math.min(delay * 2, 30000); // the server restarting: try again, more slowly
    }
    setTimeout(poll, document.hidden ? Math.max(delay, 10000) : delay);
  }
  setTimeout(poll, delay);
})();
