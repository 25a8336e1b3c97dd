// The new-run form: asks the server to check it as the user types or picks a file, imports
// an existing parameter file, and starts the run with fetch so nothing typed is lost on a
// refusal. The server's rules are the only rules: this file only shows what it answers.
// Without JavaScript the same form posts to the page route and still works.
"use strict";

(() => {
  const form = document.getElementById("new-run");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const { model, version } = form.dataset;
  const DEBOUNCE_MS = 300;
  const paramFields = [...form.querySelectorAll("[data-param]")];
  const inputFields = [...form.querySelectorAll("[data-input]")];
  const startButton = $("start-run");
  const statusLine = $("form-status");

  let timer = null;
  let checking = false; // a check is under way
  let stale = false; // the form changed while it was
  let starting = false; // the run is being started: checks are moot

  // ------------------------------------------------------------------ the request

  function paramValues() {
    const values = {};
    for (const el of paramFields) {
      values[el.dataset.param] = el.type === "checkbox" ? el.checked : el.value;
    }
    return values;
  }

  /** The whole form as the API takes it: params as JSON text, files as inputs.<slot>. */
  function requestBody() {
    const body = new FormData();
    body.append("model", model);
    body.append("version", version);
    body.append("params", JSON.stringify(paramValues()));
    const notifyMe = $("notify-me");
    if (notifyMe && !notifyMe.checked) body.append("notify", "false"); // else: the settings
    for (const el of inputFields) {
      if (el.files.length) body.append(el.name, el.files[0]);
    }
    for (const id of ["from-run", "run-name", "run-tags", "run-project"]) {
      const el = $(id);
      if (el && el.value.trim()) body.append(el.name, el.value.trim());
    }
    return body;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    });
  }

  async function problemOf(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
    } catch (_) { /* not JSON */ }
    return `the server answered HTTP ${response.status}`;
  }

  // ------------------------------------------------------------------ showing answers

  /** The error or warning slot of ``params.<name>`` / ``inputs.<slot>``, if the form has it. */
  function slotOf(field, kind) {
    const match = /^(params|inputs)\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(field ?? "");
    if (!match) return null;
    return $(`${kind}-${match[1] === "params" ? "param" : "input"}-${match[2]}`);
  }

  function fillList(boxId, lines) {
    const box = $(boxId);
    const list = box.querySelector("ul");
    list.replaceChildren(...lines.map((line) => {
      const item = document.createElement("li");
      item.textContent = line;
      return item;
    }));
    box.hidden = lines.length === 0;
  }

  /** Show one answer of the server: ``{errors: [{field, message}], warnings: [...]}``. */
  function showAnswer(answer, localErrors = new Map()) {
    const slots = new Map(); // element -> lines
    const general = { error: [], warning: [] };
    const place = (kind, item) => {
      const slot = slotOf(item.field, kind);
      if (slot) {
        if (!slots.has(slot)) slots.set(slot, []);
        slots.get(slot).push(item.message);
      } else {
        general[kind].push(item.field ? `${item.field}: ${item.message}` : item.message);
      }
    };
    for (const item of answer.errors ?? []) place("error", item);
    for (const item of answer.warnings ?? []) place("warning", item);
    for (const [field, message] of localErrors) place("error", { field, message });

    for (const el of form.querySelectorAll(".field-error, .field-warning")) {
      el.textContent = (slots.get(el) ?? []).join("\n");
    }
    for (const el of [...paramFields, ...inputFields]) {
      const slot = $(`error-${el.id}`);
      if (slot && slot.textContent) el.setAttribute("aria-invalid", "true");
      else el.removeAttribute("aria-invalid");
    }
    fillList("form-errors", general.error);
    fillList("form-warnings", general.warning);
    for (const id of ["form-summary", "form-note"]) {
      if ($(id)) $(id).hidden = true;
    }

    const count = (answer.errors?.length ?? 0) + localErrors.size;
    startButton.disabled = count > 0;
    statusLine.textContent = count === 0 ? "" :
      `${count} ${count === 1 ? "problem" : "problems"} to fix before the run can start.`;
    return count;
  }

  function showFailure(text) {
    fillList("form-errors", [text]);
    statusLine.textContent = "";
    startButton.disabled = false; // the server decides when the run is started
  }

  /** What the browser itself could not read (e.g. letters in a number field): its value
   * reaches the server as empty, so say so here rather than let a default slip in. */
  function unreadable() {
    const found = new Map();
    for (const el of paramFields) {
      if (el.validity?.badInput) {
        found.set(`params.${el.dataset.param}`, el.validationMessage || "cannot be read");
      }
    }
    return found;
  }

  // ------------------------------------------------------------------ checking

  /** Ask the server about the whole form. One check at a time: a change made meanwhile
   * is checked as soon as the answer is in, so uploads never pile up. */
  async function check() {
    clearTimeout(timer);
    if (checking) {
      stale = true;
      return;
    }
    checking = true;
    stale = false;
    try {
      const response = await post("/api/v1/runs/validate", requestBody());
      if (stale || starting) return;
      if (response.ok || response.status === 422) {
        const answer = await response.json();
        if (!stale && !starting) showAnswer(answer, unreadable());
      } else {
        showFailure(`The form could not be checked: ${await problemOf(response)}.`);
      }
    } catch (_) {
      if (!stale && !starting) {
        showFailure("The form could not be checked: the server did not answer.");
      }
    } finally {
      checking = false;
      if (stale && !starting) check();
    }
  }

  function checkSoon(delay = DEBOUNCE_MS) {
    clearTimeout(timer);
    timer = setTimeout(check, delay);
  }

  form.addEventListener("input", (event) => {
    if (event.target.dataset.param !== undefined) checkSoon();
  });
  form.addEventListener("change", (event) => {
    if (event.target.dataset.input !== undefined) checkSoon(0); // a file was picked
    else if (event.target.dataset.param !== undefined) checkSoon();
  });

  // ------------------------------------------------------------------ starting the run

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (starting) return;
    starting = true;
    clearTimeout(timer);
    startButton.disabled = true;
    statusLine.textContent = "Starting the run…";
    let response;
    try {
      response = await post("/api/v1/runs", requestBody());
    } catch (_) {
      starting = false;
      showFailure("The run was not started: no answer from the server.");
      return;
    }
    if (response.ok) {
      let run = null;
      try {
        run = await response.json();
      } catch (_) { /* handled below */ }
      if (run && run.id !== undefined) {
        window.location.assign(`/runs/${encodeURIComponent(run.id)}`);
        return;
      }
      starting = false;
      showFailure("The run was started, but its number could not be read: see Runs.");
      return;
    }
    starting = false;
    if (response.status === 422) {
      try {
        const count = showAnswer(await response.json(), unreadable());
        statusLine.textContent = `The run was not started: ${count} ` +
          `${count === 1 ? "problem" : "problems"} to fix.`;
        form.querySelector('[aria-invalid="true"]')?.focus();
        return;
      } catch (_) { /* fall through */ }
    }
    showFailure(`The run was not started: ${await problemOf(response)}.`);
  });

  // ------------------------------------------------------------------ importing a parameter file

  const importer = $("import-paramfile");
  if (importer) {
    $("import-box").hidden = false;
    const importError = $("error-import-paramfile");
    const importNote = $("import-note");

    /** Put one imported value in its field; false when the form has no such field. */
    function setField(name, value) {
      const el = $(`param-${name}`);
      if (!el || el.dataset.param === undefined) return false;
      if (el.type === "checkbox") {
        el.checked = Boolean(value);
      } else if (el.tagName === "SELECT") {
        const option = [...el.options].find((o) => o.value === String(value)) ??
          [...el.options].find((o) => o.value !== "" && Number(o.value) === value);
        el.value = option ? option.value : String(value);
      } else {
        el.value = String(value);
      }
      return true;
    }

    importer.addEventListener("change", async () => {
      const file = importer.files[0];
      if (!file) return;
      importError.textContent = "";
      importNote.textContent = `Reading ${file.name}…`;
      const body = new FormData();
      body.append("file", file);
      const url = `/api/v1/models/${encodeURIComponent(model)}/parameter-file` +
        `?version=${encodeURIComponent(version)}`;
      let response;
      try {
        response = await post(url, body);
      } catch (_) {
        importNote.textContent = "";
        importError.textContent = "The file could not be sent: the server did not answer.";
        return;
      } finally {
        importer.value = ""; // the same file may be picked again after editing it
      }
      importNote.textContent = "";
      if (!response.ok) {
        let lines = null;
        if (response.status === 422) {
          try {
            lines = (await response.json()).errors.map((e) => e.message);
          } catch (_) { /* not the error shape */ }
        }
        importError.textContent = lines ? lines.join("\n") : await problemOf(response);
        return;
      }
      let answer;
      try {
        answer = await response.json();
      } catch (_) {
        importError.textContent = "The server's answer was not readable.";
        return;
      }
      const names = Object.keys(answer.values ?? {});
      const filled = names.filter((name) => setField(name, answer.values[name]));
      const count = `${filled.length} ${filled.length === 1 ? "value" : "values"}`;
      const notes = [`${file.name}: ${count} filled in` +
        (filled.length ? ` (${filled.join(", ")}).` : ".")];
      if (answer.unknown?.length) {
        notes.push(`Not parameters of this model, ignored: ${answer.unknown.join(", ")}.`);
      }
      importNote.textContent = notes.join("\n");
      check();
    });
  }

  check(); // show at once what the defaults (or a restored form) would give
})();
