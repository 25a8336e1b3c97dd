// The sweep page: the results table sorts by a click on a column's title; while runs are
// going, each row's state and metrics and the sweep's progress follow the API (other scripts
// hear of each answer through a "sweep:update" event); when the last run has ended the page
// is drawn again once, with its charts.
"use strict";

(() => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  const data = JSON.parse(document.getElementById("overlay-data").textContent);
  const table = document.getElementById("sweep-results");

  // ------------------------------------------------------------------ sorting
  /** A cell's value for sorting: a number (durations in seconds) or its text. */
  function sortValue(cell) {
    const text = cell.textContent.trim();
    const time = /^(?:(\d+) h )?(?:(\d+) min)?\s*(?:([\d.]+) s)?$/.exec(text);
    if (time && text && (time[1] || time[2] || time[3])) {
      return Number(time[1] || 0) * 3600 + Number(time[2] || 0) * 60 + Number(time[3] || 0);
    }
    const number = Number(text.replace(/^#/, ""));
    return text !== "" && Number.isFinite(number) ? number : text.toLowerCase();
  }

  function compare(a, b) {
    if (a === "" || b === "") return a === "" ? (b === "" ? 0 : 1) : -1; // empty cells last
    if (typeof a === "number" && typeof b === "number") return a - b;
    if (typeof a === "number") return -1;
    if (typeof b === "number") return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  const headers = [...table.querySelectorAll("thead th[data-sort]")];
  headers.forEach((th, column) => {
    const button = document.createElement("button");
    button.type = "button";
    button.replaceChildren(...th.childNodes);
    button.title = "Sort by this column";
    th.replaceChildren(button);
    button.addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      for (const other of headers) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = [...body.rows].map((row) => [sortValue(row.cells[column]), row]);
      rows.sort((p, q) => {
        const order = compare(p[0], q[0]);
        if (p[0] === "" || q[0] === "") return order; // empty last either way
        return ascending ? order : -order;
      });
      body.append(...rows.map(([, row]) => row));
    });
  });

  if (data.finished) return;

  // ------------------------------------------------------------------ live
  const metricCount = Number(table.dataset.metrics || 0);
  const metricNames = data.metrics || [];
  const STATES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out"];
  const ENDED = new Set(STATES.slice(2));
  const TASK_ENDED = new Set([...ENDED, "skipped", "cached"]);
  let delay = 1000;

  function showCounts(sweep) {
    const line = document.getElementById("sweep-state");
    const strong = document.createElement("strong");
    strong.textContent = sweep.state;
    const parts = [strong, document.createTextNode(": ")];
    for (const state of Object.keys(sweep.counts).sort()) {
      const badge = document.createElement("span");
      badge.className = `state ${state}`;
      badge.textContent = `${sweep.counts[state]} ${state}`;
      parts.push(badge, document.createTextNode(" "));
    }
    line.replaceChildren(...parts);
    line.dataset.state = sweep.state;
  }

  function runPercent(run) {
    if (ENDED.has(run.state)) return 100;
    if (run.state !== "running" || run.tasks.length === 0) return 0;
    const done = run.tasks.reduce(
      (sum, t) => sum + (TASK_ENDED.has(t.state) ? 100 : t.progress || 0), 0);
    return done / run.tasks.length;
  }

  /** Like the server's duration(): "3.2 s", "4 min 05 s", "1 h 02 min". */
  function duration(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60), sec = Math.floor(seconds % 60);
    if (minutes < 60) return `${minutes} min ${String(sec).padStart(2, "0")} s`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  /** The time from ``start`` to ``end`` (now while it has none), as duration() says it. */
  function since(start, end) {
    if (!start) return "";
    return duration(Math.max(((end ? new Date(end) : new Date()) - new Date(start)) / 1000, 0));
  }

  function showProgress(sweep) {
    const runs = sweep.runs;
    if (runs.length === 0) return;
    const percent = runs.reduce((sum, run) => sum + runPercent(run), 0) / runs.length;
    const ended = runs.filter((run) => ENDED.has(run.state)).length;
    const starts = runs.filter((run) => run.started_at).map((run) => new Date(run.started_at));
    let text = `${ended} of ${runs.length} runs ended · ${Math.round(percent)} %`;
    if (ended < runs.length && starts.length && percent > 0) {
      const elapsed = Math.max((Date.now() - Math.min(...starts)) / 1000, 0);
      text += ` · about ${duration((elapsed * (100 - percent)) / percent)} left`;
    }
    document.getElementById("sweep-bar").value = Math.round(percent);
    document.getElementById("sweep-progress-text").textContent = text;
  }

  function showRun(run) {
    const row = document.getElementById(`sweep-run-${run.id}`);
    if (!row) return;
    const badge = row.querySelector("[data-run-state]");
    if (badge && badge.textContent !== run.state) {
      badge.textContent = run.state;
      badge.className = `state ${STATES.includes(run.state) ? run.state : ""}`;
    }
    const ended = ENDED.has(run.state);
    const queuedEnd = run.started_at || (ended ? run.finished_at : null);
    row.querySelector('[data-cell="queued"]').textContent = since(run.created_at, queuedEnd);
    row.querySelector('[data-cell="ran"]').textContent = since(run.started_at, run.finished_at);
    if (run.metrics && metricCount) {
      const cells = [...row.children].slice(-metricCount);
      metricNames.forEach((name, i) => {
        if (name in run.metrics) cells[i].textContent = String(run.metrics[name]);
      });
    }
  }

  async function poll() {
    try {
      const answer = await fetch(`/api/v1/sweeps/${data.sweep}`, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (answer.ok) {
        const sweep = await answer.json();
        showCounts(sweep);
        showProgress(sweep);
        sweep.runs.forEach(showRun);
        document.dispatchEvent(new CustomEvent("sweep:update", { detail: sweep }));
        if (sweep.state === "finished") {
          window.location.reload(); // once: the page now has every metric and its charts
          return;
        }
        delay = 1000;
      } else {
        delay = Math.min(delay * 2, 15000);
      }
    } catch {
      delay = Math.min(delay * 2, 15000); // the server restarting: try again, more slowly
    }
    setTimeout(poll, delay);
  }

  setTimeout(poll, delay);
})();
