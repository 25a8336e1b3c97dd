// Times on a page in the reader's own time zone: every <time datetime="...Z"> (from the
// _time.html macro) becomes "2026-12-01 17:03 CET", with "3 min ago" where it has
// data-relative, and UTC in its title. Pages that add rows later call SimyardTimes.show(row).
"use strict";

window.SimyardTimes = (() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const pad = (n) => String(n).padStart(2, "0");

  /** "CET", "GMT+1"... as the browser names the zone at that moment. */
  function zoneName(date) {
    const part = new Intl.DateTimeFormat("en-GB", { timeZone: zone, timeZoneName: "short" })
      .formatToParts(date)
      .find((p) => p.type === "timeZoneName");
    return part ? part.value : zone;
  }

  function local(date) {
    const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
    return `${day} ${pad(date.getHours())}:${pad(date.getMinutes())} ${zoneName(date)}`;
  }

  function utc(date) {
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  /** "just now", "3 min ago", "2 h ago", "5 days ago" (or "in 3 min" for a future time). */
  function relative(date, now = Date.now()) {
    const seconds = Math.round((now - date.getTime()) / 1000);
    const ahead = seconds < 0;
    const s = Math.abs(seconds);
    let text;
    if (s < 45) return "just now";
    if (s < 3600) text = `${Math.round(s / 60)} min`;
    else if (s < 86400) text = `${Math.round(s / 3600)} h`;
    else text = `${Math.round(s / 86400)} day${Math.round(s / 86400) === 1 ? "" : "s"}`;
    return ahead ? `in ${text}` : `${text} ago`;
  }

  function showOne(element) {
    const date = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) return;
    const when = local(date);
    element.textContent = element.hasAttribute("data-relative")
      ? `${when} (${relative(date)})`
      : when;
    element.title = `${utc(date)} (your time zone: ${zone})`;
  }

  /** Rewrite the <time> elements in ``root`` (the whole page by default). */
  function show(root = document) {
    root.querySelectorAll("time[datetime]").forEach(showOne);
  }

  /** A <time> element for ``iso`` (an API time with "Z"), shown like the others. */
  function element(iso, isRelative = true) {
    const time = document.createElement("time");
    time.setAttribute("datetime", iso);
    if (isRelative) time.setAttribute("data-relative", "");
    time.textContent = iso;
    showOne(time);
    return time;
  }

  show();
  setInterval(() => show(), 30000); // "3 min ago" goes on counting
  return { show, element, relative, zone };
})();
