// The sweep page, live: while runs are going, each row's state and metrics follow the API;
// when the last run has ended the page is drawn again once, with its charts.
"use strict";

(() => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  const data = JSON.parse(document.getElementById("overlay-data").textContent);
  if (data.finished) return;
  const table = document.getElementById("sweep-results");
  const metricCount = Number(table.dataset.metrics || 0);
  const metricNames = metricCount
    ? [...table.querySelectorAll("thead th")].slice(-metricCount).map((th) => th.textContent)
    : [];
  const STATES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out"];
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

  function showRun(run) {
    const row = document.getElementById(`sweep-run-${run.id}`);
    if (!row) return;
    const badge = row.querySelector("[data-run-state]");
    if (badge && badge.textContent !== run.state) {
      badge.textContent = run.state;
      badge.className = `state ${STATES.includes(run.state) ? run.state : ""}`;
    }
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
        sweep.runs.forEach(showRun);
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
