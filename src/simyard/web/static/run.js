// The run page, live: follows the run's event stream and its running tasks' logs, keeps the
// task timeline ticking, and fills outputs, metrics and plots once the run has ended.
// The server renders everything known at load time; this only keeps it current.
// Logs show line numbers and each line's capture time, filter by a search, and the failure
// summary's quoted lines link to their line (``#log-TASK-L12``).
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
  const SHOWN_LINES = 1000; // lines drawn at once: the log's end, or the last matches
  const KEPT_LINES = 20000; // lines kept for the search
  const WHOLE_LOG = 4 * 1024 * 1024; // a stored log up to this size is read whole (numbered)
  const TAIL_BYTES = 256 * 1024; // of a larger one, its end (line numbers unknown)
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

  /** Show the API time ``text`` in ``cell`` as times.js shows times (the reader's zone, how
   *  long ago if ``relative``, UTC on hover), or ``empty`` when there is none; unchanged
   *  times are left be. */
  function showTime(cell, text, empty = "", relative = true) {
    const t = parseTime(text);
    if (!t) {
      cell.textContent = empty;
      return;
    }
    const iso = t.toISOString();
    const shown = cell.querySelector("time");
    if (shown && new Date(shown.getAttribute("datetime")).toISOString() === iso) return;
    cell.replaceChildren(window.SimyardTimes.element(iso, relative));
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
    showTime(row.querySelector(".started"), task.started_at);
    row.querySelector(".duration").textContent = duration(task.started_at, task.finished_at);
    const text = row.querySelector(".progress-text");
    if (task.progress === null || task.progress === undefined) {
      text.textContent = "";
    } else {
      const left = timeLeft(task);
      text.textContent = `${Math.round(task.progress)} %${left ? ` · ${left}` : ""}`;
    }
  }

  /** The run's one progress bar: the running task that is least far, else the share of
   *  tasks done (as the server renders it). */
  function showRunProgress() {
    const box = $("run-progress");
    box.hidden = isFinal() || run.tasks.length === 0;
    if (box.hidden) return;
    const ended = run.tasks.filter((t) => FINAL_TASK.has(t.state)).length;
    const done = `${ended} of ${run.tasks.length} tasks done`;
    const running = run.tasks.filter((t) => t.state === "running");
    if (running.length === 0) {
      $("run-bar").value = (100 * ended) / run.tasks.length;
      $("run-progress-text").textContent = done;
      return;
    }
    const task = running.reduce((a, b) => ((b.progress ?? 0) < (a.progress ?? 0) ? b : a));
    const left = timeLeft(task);
    $("run-bar").value = task.progress ?? 0;
    $("run-progress-text").textContent =
      `${task.name} ${Math.round(task.progress ?? 0)} %${left ? ` · ${left}` : ""}`;
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
    showFailureText();
    if (what.hidden) return;
    what.append(words.charAt(0).toUpperCase() + words.slice(1));
    if (error.task) what.append(" in task ", cell("code", error.task), ".");
    else what.append(".");
  }

  /** How long the run waited for a slot, and how long it has run (or ran). */
  function showDurations() {
    const queuedEnd = run.started_at || (isFinal() ? run.finished_at : null);
    $("run-queued").textContent = duration(run.created_at, queuedEnd) || "—";
    $("run-duration").textContent = duration(run.started_at, run.finished_at) || "—";
  }

  function showRun() {
    setState($("run-state"), run.state);
    showTime($("run-started"), run.started_at, "—", false);
    showTime($("run-finished"), run.finished_at, "—", false);
    showDurations();
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
    showRunProgress();
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

  const openedLive = new Set(run.tasks.filter((t) => t.state === "running").map((t) => t.name));
  let resultsShown = isFinal(); // a finished run's results are rendered by the server
  let outputsAt = finishedCount(run); // finished tasks when the outputs were last listed

  /** Follow what started; once ``fetched`` data says so, list outputs and show results. */
  function afterChange(before, fetched) {
    for (const task of run.tasks) {
      const old = before.tasks.find((t) => t.name === task.name);
      const box = $(`logbox-${task.name}`);
      if (task.state === "running" && (!old || old.state !== "running" || old.attempt !== task.attempt)) {
        if (box && !box.open) {
          box.open = true;
          openedLive.add(task.name);
        }
        followLog(task.name);
      } else if (box && openedLive.has(task.name) && FINAL_TASK.has(task.state)) {
        // a task that ended well folds its log away again: the running one stays in sight
        openedLive.delete(task.name);
        if (!["failed", "timed_out"].includes(task.state)) box.open = false;
        else loadLog(task);
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
      $("key-metrics").hidden = false;
      if ($("run-plots")) $("run-plots").hidden = false;
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
    showDurations();
    run.tasks.filter((t) => t.state === "running").forEach(showTask);
    showRunProgress();
  }, 1000);

  // ------------------------------------------------------------------ logs

  // task name -> {lines: [{n, text, at}], next, numbered, source, loaded, drawTimer, focus}
  const logs = new Map();

  function logOf(name) {
    if (!logs.has(name)) {
      logs.set(name, {
        lines: [], next: 1, numbered: true, source: null, loaded: false, drawTimer: null,
        focus: null,
      });
    }
    return logs.get(name);
  }

  function resetLog(log) {
    log.lines = [];
    log.next = 1;
    log.numbered = true;
  }

  const lineId = (name, n) => `log-${name}-L${n}`;

  /** ``14:03:07`` in the browser's time zone; the title has the full UTC time. */
  function clock(at) {
    const t = new Date(at);
    return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  }

  /** One line: its number and capture time (drawn by CSS, so copied text is the log's
   *  own), its text with the search's matches marked. */
  function lineElement(name, line, query) {
    const element = document.createElement("span");
    element.className = "line";
    if (line.n !== null) {
      element.id = lineId(name, line.n);
      element.dataset.n = String(line.n);
    }
    if (line.at) {
      const at = cell("span", "", "at");
      at.dataset.at = clock(line.at);
      at.title = `captured ${line.at}`;
      element.append(at);
    }
    if (!query) {
      element.append(line.text);
      return element;
    }
    const lower = line.text.toLowerCase();
    let from = 0;
    for (let found = lower.indexOf(query); found !== -1; found = lower.indexOf(query, from)) {
      element.append(line.text.slice(from, found), cell("mark", line.text.slice(found, found + query.length)));
      from = found + query.length;
    }
    element.append(line.text.slice(from));
    return element;
  }

  function queryOf(name) {
    return $(`logbox-${name}`)?.querySelector(".log-search")?.value.trim().toLowerCase() ?? "";
  }

  /** The lines to draw: the matches of the search, or around a line asked for, or the end. */
  function linesToDraw(log, query) {
    if (query) return log.lines.filter((l) => l.text.toLowerCase().includes(query)).slice(-SHOWN_LINES);
    const focus = log.focus === null ? -1 : log.lines.findIndex((l) => l.n === log.focus);
    if (focus >= 0 && focus < log.lines.length - SHOWN_LINES) {
      const start = Math.max(0, focus - SHOWN_LINES / 2);
      return log.lines.slice(start, start + SHOWN_LINES);
    }
    return log.lines.slice(-SHOWN_LINES);
  }

  function drawLogNow(name) {
    const log = logOf(name);
    const pre = $(`log-${name}`);
    if (!pre) return;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 30;
    const query = queryOf(name);
    const shown = linesToDraw(log, query);
    const fragment = document.createDocumentFragment();
    shown.forEach((line, index) => {
      if (index > 0) fragment.append("\n");
      fragment.append(lineElement(name, line, query));
    });
    pre.replaceChildren(fragment);
    pre.classList.toggle("numbered", log.lines.some((l) => l.n !== null));
    const matches = $(`logbox-${name}`)?.querySelector(".log-matches");
    if (matches) {
      const total = query ? log.lines.filter((l) => l.text.toLowerCase().includes(query)).length : 0;
      matches.textContent = !query ? ""
        : total === 0 ? "no line matches"
        : `${total} matching line${total === 1 ? "" : "s"}${total > shown.length ? `, the last ${shown.length} shown` : ""}`;
    }
    if (log.focus !== null && !query) {
      const target = document.getElementById(lineId(name, log.focus));
      if (target) {
        target.classList.add("target");
        pre.scrollTop = target.offsetTop - pre.offsetTop - pre.clientHeight / 3;
        return;
      }
    }
    if (atBottom && !query) pre.scrollTop = pre.scrollHeight;
  }

  function drawLog(name) {
    const log = logOf(name);
    if (log.drawTimer) return;
    log.drawTimer = setTimeout(() => {
      log.drawTimer = null;
      drawLogNow(name);
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
    showRunProgress();
  }

  /** A line of the live stream; after a line the server wrote itself (``[simyard: ...]``,
   *  part of the log not shown live) the numbers are no longer the log's own. */
  function addLine(name, text, at) {
    readProgress(name, text);
    const log = logOf(name);
    if (text.startsWith("[simyard: ") && /not shown live|capped here/.test(text)) log.numbered = false;
    log.lines.push({ n: log.numbered ? log.next++ : null, text, at: at ?? null });
    if (log.lines.length > KEPT_LINES * 1.1) log.lines = log.lines.slice(-KEPT_LINES);
    drawLog(name);
  }

  function noteLog(name, text) {
    const note = $(`logbox-${name}`)?.querySelector(".log-note");
    if (note) note.textContent = text;
  }

  /** Follow a task's log stream (it replays the log from its start, then goes live); each
   *  line comes with the time the server captured it. */
  function followLog(name) {
    const log = logOf(name);
    if (log.source) return;
    const url = `${api}/logs/${encodeURIComponent(name)}/follow?times=true`;
    const source = new EventSource(url);
    log.source = source;
    noteLog(name, "live");
    source.onopen = () => resetLog(log); // every (re)connection starts from the first line
    source.onmessage = (message) => {
      const line = JSON.parse(message.data);
      if (typeof line === "string") addLine(name, line, null);
      else addLine(name, line.line, line.at);
    };
    source.addEventListener("attempt", (message) => {
      resetLog(log);
      log.lines.push({ n: null, text: `[simyard: attempt ${message.data} starts]`, at: null });
      drawLog(name);
    });
    source.addEventListener("end", () => {
      source.close();
      log.source = null;
      log.loaded = true;
      noteLog(name, "");
      drawLog(name);
      linkFailureQuotes();
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        log.source = null;
        noteLog(name, "");
        showError(`The log of task ${name} could not be followed.`);
      }
    };
  }

  /** The capture times of a stored log's lines (first line number -> time), or none. */
  async function captureTimes(name) {
    try {
      const response = await fetch(`${api}/logs/${encodeURIComponent(name)}/times`);
      if (!response.ok) return [];
      return (await response.json()).lines ?? [];
    } catch (_) {
      return [];
    }
  }

  /** Show a finished task's log: read whole when small enough (then numbered, with its
   *  capture times), else its end. */
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
    const offset = stored > WHOLE_LOG ? stored - TAIL_BYTES : 0;
    try {
      const url = `${api}/logs/${encodeURIComponent(task.name)}?offset=${offset}&length=${offset ? TAIL_BYTES : WHOLE_LOG}`;
      const [response, times] = await Promise.all([fetch(url), offset ? [] : captureTimes(task.name)]);
      if (!response.ok) throw new Error(await problemOf(response));
      let lines = (await response.text()).split("\n");
      if (offset > 0) lines = lines.slice(1); // the first line is cut
      if (lines.at(-1) === "") lines.pop();
      resetLog(log);
      let mark = 0;
      lines.slice(-KEPT_LINES).forEach((text, index) => {
        const n = offset ? null : lines.length - Math.min(lines.length, KEPT_LINES) + index + 1;
        while (n !== null && mark + 1 < times.length && times[mark + 1][0] <= n) mark += 1;
        const at = n !== null && times.length && times[mark][0] <= n ? times[mark][1] : null;
        log.lines.push({ n, text, at });
      });
      if (offset > 0) noteLog(task.name, `its last ${log.lines.length} lines; the download has all`);
      drawLogNow(task.name);
      linkFailureQuotes();
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
    const search = box.querySelector(".log-search");
    search?.addEventListener("input", () => {
      logOf(box.dataset.task).focus = null;
      drawLogNow(box.dataset.task);
    });
  }

  /** ``#log-TASK-L12``: open that log and show its line 12; ``#logbox-TASK``: open it. */
  function showLogLine() {
    const hash = decodeURIComponent(window.location.hash);
    const whole = /^#logbox-(.+)$/.exec(hash);
    if (whole && $(`logbox-${whole[1]}`)) {
      $(`logbox-${whole[1]}`).open = true;
      return;
    }
    const found = /^#log-(.+)-L(\d+)$/.exec(hash);
    if (!found) return;
    const [, name, n] = found;
    const box = $(`logbox-${name}`);
    if (!box) return;
    const log = logOf(name);
    log.focus = Number(n);
    const search = box.querySelector(".log-search");
    if (search) search.value = "";
    document.querySelectorAll(".log .line.target").forEach((l) => l.classList.remove("target"));
    if (!box.open) box.open = true; // its toggle loads the log, which then shows the line
    if (log.lines.length) drawLogNow(name);
    box.scrollIntoView({ block: "start" });
  }

  window.addEventListener("hashchange", showLogLine);

  /** The failure summary, each quoted line a link to its line in the task's log once that
   *  log is here whole (the text stays the summary's own). */
  function showFailureText() {
    const pre = $("failure-summary").querySelector(".failure-text");
    const summary = run.error?.summary ?? "";
    const log = run.error?.task ? logs.get(run.error.task) : null;
    const numbered = log && log.lines.length && log.lines[0].n === 1 ? log.lines : null;
    if (!numbered) {
      pre.textContent = summary;
      return;
    }
    const rows = summary.split("\n");
    const quoted = []; // [row index, text, part]
    let part = "";
    rows.forEach((row, index) => {
      if (row === "The model said:") part = "said";
      else if (row === "Last lines of its log:") part = "tail";
      else if (part && row.startsWith("  ")) quoted.push([index, row.slice(2), part]);
    });
    const found = new Map(); // row index -> line number
    let from = 0;
    for (const [index, text, which] of quoted) {
      if (which !== "said") continue;
      const at = numbered.findIndex((l, i) => i >= from && l.text === text);
      if (at >= 0) {
        found.set(index, numbered[at].n);
        from = at + 1;
      }
    }
    const tail = quoted.filter((q) => q[2] === "tail");
    const end = numbered.length;
    tail.forEach(([index, text], k) => {
      const line = numbered[end - tail.length + k];
      if (line && line.text === text) found.set(index, line.n);
    });
    const fragment = document.createDocumentFragment();
    rows.forEach((row, index) => {
      if (index > 0) fragment.append("\n");
      if (!found.has(index)) {
        fragment.append(row);
        return;
      }
      const n = found.get(index);
      const link = cell("a", row.slice(2), "quote-link");
      link.href = `#${lineId(run.error.task, n)}`;
      link.title = `line ${n} of the log of task ${run.error.task}`;
      fragment.append("  ", link);
    });
    pre.replaceChildren(fragment);
  }

  function linkFailureQuotes() {
    if (run.error?.task) showFailureText();
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
    if (outputs.length > data.flat_outputs) return showFolders();
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
    $("outputs-filter").hidden = outputs.length < 10;
    filterOutputs();
    return true;
  }

  /** Many outputs are shown by folder, as the server renders them: take its section. */
  async function showFolders() {
    try {
      const response = await fetch(`/runs/${run.id}`);
      if (!response.ok) throw new Error(await problemOf(response));
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const section = page.getElementById("outputs-section");
      if (!section) throw new Error("the page has no outputs");
      $("outputs-section").replaceWith(document.importNode(section, true));
      return true;
    } catch (error) {
      showError(`Could not list the outputs: ${error.message}`);
      return false;
    }
  }

  /** A folder of outputs, opened: its files, from the folder's own page. */
  async function openFolder(folder) {
    if (folder.dataset.loaded) return;
    folder.dataset.loaded = "1";
    const body = folder.querySelector(".folder-files tbody");
    body.replaceChildren(cell("tr", "")); // a row while it loads
    body.firstChild.append(cell("td", "Loading the folder's files…", "muted"));
    try {
      const response = await fetch(folder.dataset.url);
      if (!response.ok) throw new Error(await problemOf(response));
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const rows = page.querySelectorAll("#folder-files tbody tr");
      body.replaceChildren(...[...rows].map((row) => {
        const copy = document.importNode(row, true);
        copy.firstElementChild.remove(); // the task is the folder's
        return copy;
      }));
      filterOutputs();
    } catch (error) {
      delete folder.dataset.loaded;
      body.replaceChildren();
      showError(`Could not list the folder's files: ${error.message}`);
    }
  }

  // toggle does not bubble: listen while it goes down to the folder
  document.addEventListener("toggle", (event) => {
    const folder = event.target;
    if (folder instanceof HTMLDetailsElement && folder.classList.contains("output-folder") && folder.open) {
      openFolder(folder);
    }
  }, true);

  /** Keep the output rows (files, folders, the files of an opened folder) whose text has
   *  the filter's words. */
  function filterOutputs() {
    const query = ($("outputs-filter")?.value ?? "").trim().toLowerCase();
    const has = (element) => !query || element.textContent.toLowerCase().includes(query);
    for (const row of document.querySelectorAll("#outputs > tbody > tr:not(.empty)")) {
      const inner = [...row.querySelectorAll(".folder-files tr")];
      inner.forEach((file) => { file.hidden = !has(file); });
      const folder = row.querySelector("details.output-folder > summary");
      row.hidden = !(folder ? has(folder) || inner.some((file) => !file.hidden) : has(row));
    }
  }

  document.addEventListener("input", (event) => {
    if (event.target.id === "outputs-filter") filterOutputs();
  });

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
  showLogLine();
  if (isFinal()) {
    drawPlots();
  } else {
    startEvents(); // it replays every event so far, so nothing between render and now is lost
  }
})();
