// The run page, live: follows the run's event stream and its running tasks' logs, keeps the
// task timeline ticking, and fills outputs, metrics and plots once the run has ended.
// The server renders everything known at load time; this only keeps it current.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("run-page-data").textContent);
  let run = data.run;
  const api = `/api/v1/runs/${run.id}`;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const FINAL_RUN = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
  const FINAL_TASK = new Set([...FINAL_RUN, "skipped", "cached"]);
  const EVENT_KINDS = [
    "run.queued", "run.running", "run.cancel_requested", "run.succeeded", "run.failed",
    "run.cancelled", "run.timed_out", "task.queued", "task.running", "task.succeeded",
    "task.failed", "task.cancelled", "task.timed_out", "task.skipped", "task.retry",
  ];
  const LOG_LINES = 200;
  const TAIL_BYTES = 64 * 1024;
  const $ = (id) => document.getElementById(id);
  // Progress is read from the live log lines with the task's own pattern, as the engine does;
  // a pattern JavaScript cannot compile falls back to asking the server every two seconds.
  const progressPatterns = new Map();
  for (const [name, pattern] of Object.entries(data.progress_patterns)) {
    try {
      progressPatterns.set(name, new RegExp(pattern));
    } catch (_) { /* a Python-only regex */ }
  }
  const liveProgress = new Map(); // task name -> {attempt, percent}

  // ------------------------------------------------------------------ small helpers

  function showError(text) {
    const line = $("page-error");
    line.textContent = text;
    line.hidden = false;
  }

  function clearError() {
    $("page-error").hidden = true;
  }

  async function problemOf(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
    } catch (_) { /* not JSON */ }
    return `HTTP ${response.status}`;
  }

  /** API times are UTC, sometimes written without a zone. */
  function parseTime(text) {
    if (!text) return null;
    return new Date(/(Z|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`);
  }

  const pad = (n) => String(n).padStart(2, "0");

  /** ``2026-11-28 14:03`` (UTC), as the server writes it. */
  function when(text) {
    const t = parseTime(text);
    if (!t) return "";
    return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())} ` +
      `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}`;
  }

  function formatSeconds(seconds) {
    seconds = Math.max(seconds, 0);
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    let minutes = Math.floor(seconds / 60);
    const sec = Math.floor(seconds) % 60;
    if (minutes < 60) return `${minutes} min ${pad(sec)} s`;
    const hours = Math.floor(minutes / 60);
    minutes %= 60;
    return `${hours} h ${pad(minutes)} min`;
  }

  function duration(start, end) {
    const s = parseTime(start);
    if (!s) return "";
    const e = parseTime(end) ?? new Date();
    return formatSeconds((e - s) / 1000);
  }

  function size(bytes) {
    let value = bytes;
    for (const unit of ["B", "KiB", "MiB", "GiB"]) {
      if (value < 1024 || unit === "GiB") {
        return unit === "B" ? `${value.toFixed(0)} B` : `${value.toFixed(1)} ${unit}`;
      }
      value /= 1024;
    }
    return "";
  }

  function shown(value) {
    if (value === null || value === undefined) return "—";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function cell(tag, text, className) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    element.textContent = text;
    return element;
  }

  function setState(element, state) {
    element.className = `state ${state}`;
    element.textContent = state;
  }

  // ------------------------------------------------------------------ the run and its tasks

  const isFinal = () => FINAL_RUN.has(run.state);

  function timeLeft(task) {
    const p = task.progress;
    const started = parseTime(task.started_at);
    if (task.state !== "running" || !started || !p || p >= 100) return "";
    const elapsed = (Date.now() - started) / 1000;
    return `about ${formatSeconds((elapsed * (100 - p)) / p)} left`;
  }

  function showTask(task) {
    const row = $(`task-${task.name}`);
    if (!row) return;
    setState(row.querySelector(".state"), task.state);
    row.querySelector(".attempt").textContent = task.attempt ? String(task.attempt) : "";
    row.querySelector(".exit-code").textContent =
      task.signal != null ? `signal ${task.signal}` : (task.exit_code ?? "");
    row.querySelector(".started").textContent = when(task.started_at);
    row.querySelector(".duration").textContent = duration(task.started_at, task.finished_at);
    const bar = row.querySelector(".bar");
    const text = row.querySelector(".progress-text");
    if (task.progress === null || task.progress === undefined) {
      bar.hidden = true;
      text.textContent = "";
    } else {
      bar.hidden = false;
      bar.value = task.progress;
      const left = timeLeft(task);
      text.textContent = `${Math.round(task.progress)} %${left ? ` · ${left}` : ""}`;
    }
  }

  function showFailure() {
    const box = $("failure-summary");
    const error = run.error;
    box.hidden = !error;
    if (!error) return;
    box.classList.toggle("cancelled", run.state === "cancelled");
    $("failure-title").textContent = run.state === "cancelled" ? "Cancelled" : "Why it failed";
    const words = data.failure_words[error.kind] ?? error.kind ?? "it failed";
    const what = box.querySelector(".failure-what");
    what.replaceChildren();
    what.hidden = error.kind === "cancelled"; // the summary says just that
    box.querySelector(".failure-text").textContent = error.summary ?? "";
    if (what.hidden) return;
    what.append(words.charAt(0).toUpperCase() + words.slice(1));
    if (error.task) what.append(" in task ", cell("code", error.task), ".");
    else what.append(".");
  }

  function showRun() {
    setState($("run-state"), run.state);
    $("run-started").textContent = when(run.started_at) || "—";
    $("run-finished").textContent = when(run.finished_at) || "—";
    $("run-duration").textContent = duration(run.started_at, run.finished_at) || "—";
    const queue = $("queue-position");
    queue.hidden = isFinal() || run.queue_position === null || run.queue_position === undefined;
    const ahead = run.queue_position;
    const why = run.waiting || "waiting for a free slot";
    queue.textContent = why.charAt(0).toUpperCase() + why.slice(1) + ": " + (ahead === 0
      ? "next in the queue."
      : `${ahead} task ${ahead === 1 ? "run is" : "runs are"} ahead in the queue.`);
    $("cancel-run").hidden = isFinal();
    $("rerun").hidden = !isFinal();
    $("rerun-failed").hidden = !isFinal() || run.state === "succeeded";
    run.tasks.forEach(showTask);
    showFailure();
  }

  let refreshing = false;
  let again = false;
  let retry = null;

  /** Fetch the run and show it; at most one request at a time, the last call wins. */
  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    clearTimeout(retry);
    retry = null;
    try {
      const response = await fetch(api, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(await problemOf(response));
      const before = run;
      run = await response.json();
      for (const task of run.tasks) {
        const live = liveProgress.get(task.name);
        if (task.state === "running" && live?.attempt === task.attempt) {
          task.progress = Math.max(task.progress ?? 0, live.percent);
        }
      }
      clearError();
      showRun();
      afterChange(before, true);
    } catch (error) {
      showError(`Could not update the run: ${error.message}`);
      // Try again: the event that asked for this fetch may have been the run's last one.
      retry = setTimeout(refresh, 3000);
    } finally {
      refreshing = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  const finishedCount = (r) => r.tasks.filter((t) => FINAL_TASK.has(t.state)).length;

  let resultsShown = isFinal(); // a finished run's results are rendered by the server
  let outputsAt = finishedCount(run); // finished tasks when the outputs were last listed

  /** Follow what started; once ``fetched`` data says so, list outputs and show results. */
  function afterChange(before, fetched) {
    for (const task of run.tasks) {
      const old = before.tasks.find((t) => t.name === task.name);
      const box = $(`logbox-${task.name}`);
      if (task.state === "running" && (!old || old.state !== "running" || old.attempt !== task.attempt)) {
        if (box) box.open = true;
        followLog(task.name);
      } else if (box?.open) {
        loadLog(task);
      }
      if (task.started_at && box) box.querySelector(".log-download").hidden = false;
      if (!task.started_at && FINAL_TASK.has(task.state) && logOf(task.name).lines.length === 0) {
        $(`log-${task.name}`).textContent = "(did not run)";
      }
    }
    if (!fetched) return;
    if (isFinal() && !resultsShown) {
      resultsShown = true;
      outputsAt = finishedCount(run);
      stopEvents();
      const failedBox = run.error?.task ? $(`logbox-${run.error.task}`) : null;
      if (failedBox) failedBox.open = true; // its toggle event loads the log's end
      showMetrics();
      showResults();
    } else if (finishedCount(run) !== outputsAt) {
      outputsAt = finishedCount(run);
      loadOutputs();
    }
  }

  // ------------------------------------------------------------------ live updates

  let events = null;
  let poll = null;

  let burstBefore = null;

  /** Show an event's states at once (the fetch that follows fills in the rest). */
  function applyEvent(event) {
    if (!burstBefore) {
      // replayed events arrive in a burst: show only where they end
      burstBefore = structuredClone(run);
      setTimeout(() => {
        const before = burstBefore;
        burstBefore = null;
        showRun();
        afterChange(before, false);
      }, 0);
    }
    if (typeof event.state === "string") run.state = event.state;
    if (event.kind === "run.running") run.started_at ??= event.at;
    if (event.kind.startsWith("run.") && FINAL_RUN.has(event.state)) run.finished_at ??= event.at;
    const task = event.task ? run.tasks.find((t) => t.name === event.task) : null;
    if (!task || typeof event.task_state !== "string") return;
    task.state = event.task_state;
    task.attempt = event.attempt ?? task.attempt;
    if (task.state === "running") {
      task.started_at = event.at;
      task.finished_at = null;
    } else if (FINAL_TASK.has(task.state)) {
      task.finished_at ??= event.at;
    }
  }

  function startEvents() {
    events = new EventSource(`${api}/events/follow`);
    const onEvent = (message) => {
      try {
        applyEvent(JSON.parse(message.data));
      } catch (_) { /* the fetch below still brings the state */ }
      refresh();
      if (FINAL_RUN.has(message.type.replace(/^run\./, ""))) stopEvents();
    };
    for (const kind of EVENT_KINDS) events.addEventListener(kind, onEvent);
    events.onerror = () => {
      // A dropped connection is retried by the browser (the stream restarts from the
      // first event, which only refreshes again); a refused one is not: poll instead.
      if (events && events.readyState === EventSource.CLOSED) {
        stopEvents();
        if (!isFinal()) showError("Live updates are unavailable; the page checks every few seconds.");
        poll = setInterval(() => (isFinal() ? clearInterval(poll) : refresh()), 3000);
      }
    };
  }

  function stopEvents() {
    if (events) events.close();
    events = null;
  }

  // Progress is not an event: unless the log lines tell it, ask again every two seconds
  // while a task runs; keep the durations and time left moving every second in between.
  const progressUnseen = (t) =>
    t.state === "running" && t.name in data.progress_patterns &&
    !(progressPatterns.has(t.name) && logOf(t.name).source);
  setInterval(() => {
    if (!isFinal() && run.tasks.some(progressUnseen)) refresh();
  }, 2000);
  setInterval(() => {
    if (isFinal()) return;
    $("run-duration").textContent = duration(run.started_at, run.finished_at) || "—";
    run.tasks.filter((t) => t.state === "running").forEach(showTask);
  }, 1000);

  // ------------------------------------------------------------------ logs

  const logs = new Map(); // task name -> {lines, source, loaded, drawTimer}

  function logOf(name) {
    if (!logs.has(name)) logs.set(name, { lines: [], source: null, loaded: false, drawTimer: null });
    return logs.get(name);
  }

  function drawLog(name) {
    const log = logOf(name);
    if (log.drawTimer) return;
    log.drawTimer = setTimeout(() => {
      log.drawTimer = null;
      const pre = $(`log-${name}`);
      if (!pre) return;
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 30;
      if (log.lines.length > LOG_LINES) log.lines = log.lines.slice(-LOG_LINES);
      pre.textContent = log.lines.join("\n");
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }, 80);
  }

  function readProgress(name, line) {
    const match = progressPatterns.get(name)?.exec(line);
    const task = run.tasks.find((t) => t.name === name);
    if (!match || !task || task.state !== "running") return;
    const numbers = match.slice(1).map((group) => Number.parseFloat(group));
    if (numbers.length === 0 || numbers.some((n) => !Number.isFinite(n))) return;
    const total = data.progress_totals?.[name]; // progress: {pattern, total}
    const percent = total
      ? (100 * numbers[0]) / total
      : numbers.length === 1 ? numbers[0] : (100 * numbers[0]) / (numbers[1] || 1);
    const clamped = Math.max(0, Math.min(100, percent));
    if (clamped === task.progress) return;
    task.progress = clamped;
    liveProgress.set(name, { attempt: task.attempt, percent: task.progress });
    showTask(task);
  }

  function addLine(name, line) {
    readProgress(name, line);
    const log = logOf(name);
    log.lines.push(line);
    if (log.lines.length > LOG_LINES * 2) log.lines = log.lines.slice(-LOG_LINES);
    drawLog(name);
  }

  function noteLog(name, text) {
    const note = $(`logbox-${name}`)?.querySelector(".log-note");
    if (note) note.textContent = text;
  }

  /** Follow a task's log stream (it replays the log from its start, then goes live). */
  function followLog(name) {
    const log = logOf(name);
    if (log.source) return;
    const url = `${api}/logs/${encodeURIComponent(name)}/follow`;
    const source = new EventSource(url);
    log.source = source;
    noteLog(name, "live");
    source.onopen = () => {
      log.lines = []; // every (re)connection starts from the first line
    };
    source.onmessage = (message) => addLine(name, JSON.parse(message.data));
    source.addEventListener("attempt", (message) => {
      log.lines = [];
      addLine(name, `[simyard: attempt ${message.data} starts]`);
    });
    source.addEventListener("end", () => {
      source.close();
      log.source = null;
      log.loaded = true;
      noteLog(name, "");
      drawLog(name);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        log.source = null;
        noteLog(name, "");
        showError(`The log of task ${name} could not be followed.`);
      }
    };
  }

  /** Show the end of a task's log: a range read of its stored log, else its stream. */
  async function loadLog(task) {
    const log = logOf(task.name);
    if (log.loaded || log.source || !task.started_at) return;
    if (!FINAL_TASK.has(task.state)) {
      followLog(task.name);
      return;
    }
    const stored = data.log_sizes[task.name];
    if (stored === undefined) {
      followLog(task.name); // its stored size is unknown here; the stream replays it whole
      return;
    }
    log.loaded = true;
    const offset = Math.max(stored - TAIL_BYTES, 0);
    try {
      const url = `${api}/logs/${encodeURIComponent(task.name)}?offset=${offset}&length=${TAIL_BYTES}`;
      const response = await fetch(url);
      if (!response.ok) throw new Error(await problemOf(response));
      let lines = (await response.text()).split("\n");
      if (offset > 0) lines = lines.slice(1); // the first line is cut
      if (lines.at(-1) === "") lines.pop();
      log.lines = lines.slice(-LOG_LINES);
      if (offset > 0 || lines.length > LOG_LINES) {
        noteLog(task.name, `last ${log.lines.length} lines`);
      }
      drawLog(task.name);
    } catch (error) {
      log.loaded = false;
      showError(`Could not load the log of task ${task.name}: ${error.message}`);
    }
  }

  for (const box of document.querySelectorAll("details.task-log")) {
    box.addEventListener("toggle", () => {
      const task = run.tasks.find((t) => t.name === box.dataset.task);
      if (box.open && task) loadLog(task);
    });
  }

  // ------------------------------------------------------------------ results

  let outputs = data.outputs;

  /** List the outputs again (the plots are drawn from this list); false if that failed. */
  async function loadOutputs() {
    try {
      const response = await fetch(`${api}/outputs`);
      if (!response.ok) throw new Error(await problemOf(response));
      outputs = await response.json();
    } catch (error) {
      showError(`Could not list the outputs: ${error.message}`);
      return false;
    }
    const body = $("outputs").tBodies[0];
    body.replaceChildren();
    for (const file of outputs) {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      const link = cell("a", file.path);
      link.href = window.SimyardPlots
        ? window.SimyardPlots.outputUrl(run.id, file.task, file.path)
        : `${api}/outputs/${encodeURIComponent(file.task)}/${file.path.split("/").map(encodeURIComponent).join("/")}`;
      link.setAttribute("download", "");
      const look = cell("a", "preview", "preview-link");
      look.href = `/runs/${run.id}/preview/${encodeURIComponent(file.task)}/${file.path.split("/").map(encodeURIComponent).join("/")}`;
      name.append(link, " ", look);
      if (file.kind === "diagnostic") name.append(" ", cell("span", "(diagnostic)", "muted"));
      const task = document.createElement("td");
      task.append(cell("code", file.task));
      row.append(task, name, cell("td", size(file.size)));
      body.append(row);
    }
    if (outputs.length === 0) {
      const row = document.createElement("tr");
      row.className = "empty";
      const empty = cell("td", isFinal() ? "No outputs." : "Outputs appear as tasks finish.", "muted");
      empty.colSpan = 3;
      row.append(empty);
      body.append(row);
    }
    $("outputs-zip").hidden = outputs.length === 0;
    return true;
  }

  /** Once the run has ended: its outputs, then its plots; the listing is tried until it works. */
  async function showResults(retried = false) {
    if (!(await loadOutputs())) {
      setTimeout(() => showResults(true), 3000);
      return;
    }
    if (retried) clearError();
    await drawPlots();
  }

  function showMetrics() {
    const body = $("metrics").tBodies[0];
    body.replaceChildren();
    const metrics = run.metrics ?? {};
    for (const [name, value] of Object.entries(metrics)) {
      const row = document.createElement("tr");
      const th = cell("th", name);
      th.scope = "row";
      const unit = data.metric_units?.[name];
      const td = cell("td", shown(value) + (unit && value != null ? ` ${unit}` : ""));
      if (value === null || value === undefined) {
        td.className = "muted";
        td.title = "not found";
      }
      row.append(th, td);
      body.append(row);
    }
    if (Object.keys(metrics).length === 0) {
      const row = document.createElement("tr");
      row.className = "empty";
      const text = data.metric_names.length === 0
        ? "This model declares no metrics."
        : "No metrics were recorded.";
      const empty = cell("td", text, "muted");
      empty.colSpan = 2;
      row.append(empty);
      body.append(row);
    }
  }

  async function drawPlots() {
    if (!window.SimyardPlots) return;
    await Promise.all(
      data.plots.map(async (plot, index) => {
        const element = $(`plot-${index}`);
        if (!element) return;
        try {
          await window.SimyardPlots.draw(element, plot, [{ label: "", runId: run.id, outputs }]);
        } catch (error) {
          element.replaceChildren(cell("p", `The chart cannot be drawn: ${error.message}`, "error"));
        }
      }),
    );
  }

  // ------------------------------------------------------------------ actions

  async function post(url) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    });
    if (!response.ok) throw new Error(await problemOf(response));
    return response.json();
  }

  $("cancel-run").addEventListener("click", async (event) => {
    if (!window.confirm(`Cancel run #${run.id}? Its running tasks are stopped.`)) return;
    const button = event.currentTarget;
    button.disabled = true;
    try {
      await post(`${api}/cancel`);
      refresh();
    } catch (error) {
      showError(`Could not cancel the run: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });

  async function rerun(button, fromFailed) {
    button.disabled = true;
    try {
      const created = await post(`${api}/rerun${fromFailed ? "?from_failed=true" : ""}`);
      window.location.assign(`/runs/${created.id}`);
    } catch (error) {
      showError(`Could not start the rerun: ${error.message}`);
      button.disabled = false;
    }
  }

  $("rerun").addEventListener("click", (event) => rerun(event.currentTarget, false));
  $("rerun-failed").addEventListener("click", (event) => rerun(event.currentTarget, true));

  // ------------------------------------------------------------------ start

  for (const task of run.tasks) {
    if (task.state === "running") followLog(task.name);
    else if ($(`logbox-${task.name}`)?.open) loadLog(task);
  }
  if (isFinal()) {
    drawPlots();
  } else {
    startEvents(); // it replays every event so far, so nothing between render and now is lost
  }
})();
