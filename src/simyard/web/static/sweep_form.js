// The new-sweep form, checked as the user types: the whole request goes to
// POST /api/v1/sweeps/validate (the same checks that starting it makes), which answers how
// many runs it makes or every problem by field. The server's rules are the only rules: this
// file only shows its answers. The form itself still posts to the page route.
"use strict";

(() => {
  const form = document.getElementById("new-sweep");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const { model, version } = form.dataset;
  const count = $("sweep-count");
  const DEBOUNCE_MS = 300;
  let timer = null;
  let asked = 0; // the number of the latest check: older answers are dropped
  let touched = false; // problems are shown once the user has changed something

  /** The form as the API takes a sweep: one value a parameter, several an axis. */
  function requestBody() {
    const params = {}, axes = {};
    for (const box of form.querySelectorAll("[data-value]")) {
      const text = box.value.trim();
      if (text.includes(",")) axes[box.dataset.value] = text.split(",").map((v) => v.trim());
      else if (text) params[box.dataset.value] = text;
    }
    const ticked = {};
    for (const box of form.querySelectorAll("[data-choice]:checked")) {
      (ticked[box.dataset.choice] ??= []).push(box.value);
    }
    for (const [name, values] of Object.entries(ticked)) {
      if (values.length > 1) axes[name] = values;
      else params[name] = values[0];
    }
    const body = new FormData();
    body.append("model", model);
    body.append("version", version);
    body.append("params", JSON.stringify(params));
    body.append("axes", JSON.stringify(axes));
    body.append("mode", form.querySelector('input[name="mode"]:checked')?.value ?? "grid");
    for (const input of form.querySelectorAll('input[type="file"]')) {
      if (input.files.length) body.append(input.name, input.files[0]);
    }
    return body;
  }

  /** The message slot of a field the API names, or null (then the list under the form). */
  function slotOf(field, kind) {
    const match = /^(params|axes|inputs)\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(field ?? "");
    if (match) {
      return $(`${kind}-${match[1] === "inputs" ? "input" : "sweep"}-${match[2]}`);
    }
    if (kind === "error" && (field === "axes" || field === "mode")) return $("error-axes");
    if (kind === "error" && field === "table") return $("error-table");
    return null;
  }

  function clear() {
    for (const el of form.querySelectorAll(".field-error, .field-warning")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function show(problems, kind) {
    const rest = [];
    for (const p of problems) {
      const slot = slotOf(p.field, kind);
      if (slot) {
        slot.textContent = slot.textContent ? `${slot.textContent}\n${p.message}` : p.message;
        if (kind === "error") {
          const input = slot.closest(".field")?.querySelector("input");
          if (input) input.setAttribute("aria-invalid", "true");
        }
      } else {
        rest.push(p.field ? `${p.field}: ${p.message}` : p.message);
      }
    }
    const box = $(kind === "error" ? "live-errors" : "live-warnings");
    box.querySelector("ul").replaceChildren(...rest.map((line) => {
      const item = document.createElement("li");
      item.textContent = line;
      return item;
    }));
    box.hidden = rest.length === 0;
  }

  async function check() {
    const mine = ++asked;
    if (touched) count.textContent = "Checking…";
    let answer, body;
    try {
      answer = await fetch("/api/v1/sweeps/validate", {
        method: "POST", body: requestBody(), credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      });
      body = await answer.json();
    } catch {
      if (mine === asked) count.textContent = "Could not check the form (is the server up?).";
      return;
    }
    if (mine !== asked) return;
    if (!touched && !answer.ok) {
      count.textContent = ""; // an untouched form is not yet wrong
      return;
    }
    clear();
    show(body.errors ?? [], "error");
    show(body.warnings ?? [], "warning");
    if (answer.ok) {
      count.textContent = `This creates ${body.runs} run${body.runs === 1 ? "" : "s"}.`;
    } else if (answer.status === 422) {
      count.textContent = "Not startable yet: see the problems marked.";
    } else {
      count.textContent = typeof body.detail === "string" ? body.detail : `HTTP ${answer.status}`;
    }
  }

  function soon() {
    touched = true;
    clearTimeout(timer);
    timer = setTimeout(check, DEBOUNCE_MS);
  }
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
  check();
})();
