// Charts of a run's CSV outputs with plotly.js (served by simyard at /vendor/plotly.min.js,
// loaded only when a chart is drawn). Shared by the run page and the compare page.
"use strict";

window.SimyardPlots = (() => {
  let library = null;

  /** plotly.js, loaded once on first use. */
  function loadLibrary() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!library) {
      library = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = "/vendor/plotly.min.js";
        script.onload = () =>
          window.Plotly ? resolve(window.Plotly) : reject(new Error("the chart library did not start"));
        script.onerror = () => {
          library = null;
          reject(new Error("the chart library (/vendor/plotly.min.js) could not be loaded"));
        };
        document.head.append(script);
      });
    }
    return library;
  }

  /** Rows of a CSV text (RFC 4180 quoting, CRLF or LF, a leading BOM ignored). */
  function parseCsv(text, delimiter = ",") {
    const rows = [];
    let row = [], field = "", quoted = false, i = 0;
    if (text.charCodeAt(0) === 0xfeff) i = 1;
    for (; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
        else if (c === '"') quoted = false;
        else field += c;
      } else if (c === '"') quoted = true;
      else if (c === delimiter) { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); field = "";
        if (row.length > 1 || row[0] !== "") rows.push(row);
        row = [];
      } else field += c;
    }
    row.push(field);
    if (row.length > 1 || row[0] !== "") rows.push(row);
    return rows;
  }

  const DASHES = ["solid", "dot", "dash", "dashdot", "longdash"];

  const NOT_A_NUMBER = /^[-+]?(nan|inf|infinity)$/i;

  /** Column name -> values; a column whose every cell is a number (or empty) holds numbers. */
  function toColumns(rows) {
    if (rows.length === 0) throw new Error("the file is empty");
    const header = rows[0].map((name) => name.trim());
    const columns = new Map();
    header.forEach((name, index) => {
      const cells = rows.slice(1).map((row) => (row[index] ?? "").trim());
      const numeric = cells.every(
        (cell) => cell === "" || NOT_A_NUMBER.test(cell) || Number.isFinite(Number(cell)),
      );
      const values = numeric
        ? cells.map((cell) => (cell === "" || NOT_A_NUMBER.test(cell) ? null : Number(cell)))
        : cells;
      columns.set(name, values);
    });
    return columns;
  }

  /** The columns of a CSV file fetched from ``url``. */
  /** Rows of a table file: ``#`` comment lines skipped; ``delimiter`` one character
   * (CSV quoting) or "whitespace" (cells between runs of blanks), as the manifest says. */
  function parseTable(text, delimiter = ",") {
    let header = null;
    const lines = [];
    for (const line of text.replace(/^\ufeff/, "").split(/\r?\n/)) {
      if (line.trim() === "") continue;
      if (line.trimStart().startsWith("#")) {
        if (lines.length === 0) header = line.trimStart().slice(1);
        continue;
      }
      lines.push(line);
    }
    const split = (some) => delimiter === "whitespace"
      ? some.map((line) => line.trim().split(/\s+/))
      : parseCsv(some.join("\n"), delimiter);
    const rows = split(lines);
    // a first row of numbers only: the last comment line before it is the header
    const numeric = (cell) => cell.trim() !== "" && Number.isFinite(Number(cell));
    if (header !== null && rows.length > 0 && rows[0].every(numeric)) {
      return [...split([header]), ...rows];
    }
    return rows;
  }

  async function fetchColumns(url, delimiter) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`could not download it (HTTP ${response.status})`);
    return toColumns(parseTable(await response.text(), delimiter));
  }

  /** The output (``{task, path}``) holding ``file``: the last task that wrote it. */
  function findOutput(outputs, file) {
    return outputs.filter((o) => o.path === file && o.kind !== "diagnostic").pop() ?? null;
  }

  function outputUrl(runId, task, path) {
    const parts = path.split("/").map(encodeURIComponent).join("/");
    return `/api/v1/runs/${runId}/outputs/${encodeURIComponent(task)}/${parts}`;
  }

  function note(element, text, isError) {
    const p = document.createElement("p");
    p.className = isError ? "error plot-note" : "muted plot-note";
    p.textContent = text;
    element.append(p);
  }

  /** plotly.js reads a little HTML in labels; show model-made text as text. */
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  const plainValues = (values) => values.map((v) => (typeof v === "string" ? plain(v) : v));

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  /**
   * Draw ``plot`` (a manifest entry: title, file, x, y, kind; ``files``, by run id, where
   * each source has its own) into ``element`` from ``sources``: ``[{label, runId, outputs, color?}]``; each source adds one trace per y column,
   * named "<label> <column>" (or just the column without a label).
   */
  async function draw(element, plot, sources) {
    element.replaceChildren();
    const traces = [];
    const problems = [];
    const missing = []; // not an error: a failed run often has no results to chart
    await Promise.all(
      sources.map(async (source, index) => {
        const prefix = source.label ? `${source.label} ` : "";
        // several runs (compare, sweeps): each run's own file, its placeholders and glob
        // resolved by the server; one run (the run page): ``file`` is that run's already
        const file = plot.files ? plot.files[source.runId] : plot.file;
        const found = file ? findOutput(source.outputs, file) : null;
        if (!found) {
          missing.push(`${prefix}No chart: ${file ?? plot.file} is not among this run's outputs.`);
          return;
        }
        let columns;
        try {
          const url = outputUrl(source.runId, found.task, found.path);
          columns = await fetchColumns(url, plot.delimiter ?? ",");
        } catch (error) {
          problems.push(`${prefix}${file}: ${error.message}.`);
          return;
        }
        const x = columns.get(plot.x);
        if (!x) {
          problems.push(`${prefix}${file} has no column "${plot.x}".`);
          return;
        }
        for (const name of plot.y) {
          const y = columns.get(name);
          if (!y) {
            problems.push(`${prefix}${file} has no column "${name}".`);
            continue;
          }
          traces.push({
            order: index * 1000 + plot.y.indexOf(name),
            type: "scatter",
            mode: plot.kind === "scatter" ? "markers" : "lines",
            name: plain(prefix + name),
            x: plainValues(x),
            y: plainValues(y),
            // A run's own colour (compare, sweeps) on every chart; its columns told by dashes.
            ...(source.color
              ? {
                line: { color: source.color, dash: DASHES[plot.y.indexOf(name) % DASHES.length] },
                marker: { color: source.color },
              }
              : { line: index > 0 ? { dash: "dot" } : {} }),
          });
        }
      }),
    );
    traces.sort((p, q) => p.order - q.order);
    for (const text of missing) note(element, text, false);
    for (const problem of problems) note(element, problem, true);
    if (traces.length === 0) return;
    let Plotly;
    try {
      Plotly = await loadLibrary();
    } catch (error) {
      note(element, `The chart cannot be drawn: ${error.message}.`, true);
      return;
    }
    const chart = document.createElement("div");
    chart.className = "plot-area";
    element.append(chart);
    const fg = color("--fg"), grid = color("--line");
    const axis = { gridcolor: grid, zerolinecolor: grid, linecolor: grid, automargin: true };
    await Plotly.newPlot(
      chart,
      traces.map(({ order, ...trace }) => trace),
      {
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        font: { color: fg, family: "system-ui, sans-serif" },
        margin: { t: 16, r: 16, b: 48, l: 56 },
        xaxis: { ...axis, title: { text: plain(plot.x) } },
        yaxis: {
          ...axis,
          title: { text: plain(plot.y_label ?? (plot.y.length === 1 ? plot.y[0] : "")) },
        },
        legend: { orientation: "h", y: -0.2 },
        hovermode: plot.kind === "scatter" ? "closest" : "x unified",
      },
      { responsive: true, displaylogo: false },
    );
  }

  return { loadLibrary, parseCsv, parseTable, toColumns, findOutput, outputUrl, draw };
})();
