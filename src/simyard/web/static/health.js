// The admin's executor health page, live: every few seconds the page is fetched again and
// its slot figures and running task runs replace those shown (no reload, no other state).
"use strict";

(() => {
  const note = document.getElementById("health-note");
  const PARTS = ["slots", "running"];
  const EVERY_MS = 5000;

  async function refresh() {
    try {
      const answer = await fetch(window.location.href, {
        credentials: "same-origin", headers: { Accept: "text/html" },
      });
      if (answer.ok) {
        const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
        for (const id of PARTS) {
          const now = fresh.getElementById(id), shown = document.getElementById(id);
          if (now && shown) shown.replaceWith(document.adoptNode(now));
        }
        const time = new Date().toLocaleTimeString();
        note.textContent = `Updated every ${EVERY_MS / 1000} s; last at ${time}.`;
      } else {
        note.textContent = `Not updated: the server answered HTTP ${answer.status}.`;
      }
    } catch {
      note.textContent = "Not updated: the server cannot be reached; trying again.";
    }
    setTimeout(refresh, document.hidden ? EVERY_MS * 4 : EVERY_MS);
  }
  setTimeout(refresh, EVERY_MS);
})();
