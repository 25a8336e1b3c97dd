// The sweep page's "metrics against parameters": a scatter of the chosen metric against the
// chosen parameter (one point per succeeded run) and parallel coordinates over every swept
// parameter and the metric, drawn with plotly.js (window.SimyardPlots.loadLibrary), again
// whenever a select changes or sweep.js hears of new metrics.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("overlay-data").textContent);
  const metricSelect = document.getElementById("explore-metric");
  const paramSelect = document.getElementById("explore-param");
  const note = document.getElementById("explore-note");
  const scatterBox = document.getElementById("explore-scatter");
  const parallelBox = document.getElementById("explore-parallel");
  let results = data.results;

  const plain = (text) =>
    String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  const color = (name) =>
    getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function layout(extra) {
    const fg = color("--fg"), grid = color("--line");
    const axis = { gridcolor: grid, zerolinecolor: grid, linecolor: grid, automargin: true };
    return {
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: fg, family: "system-ui, sans-serif" },
      margin: { t: 24, r: 24, b: 56, l: 64 },
      xaxis: { ...axis }, yaxis: { ...axis },
      ...extra,
    };
  }

  /** One parcoords dimension: numbers as they are, other values as ticked categories. */
  function dimension(label, values) {
    if (values.every(isNumber)) return { label: plain(label), values };
    const categories = [...new Set(values.map(String))];
    return {
      label: plain(label),
      values: values.map((v) => categories.indexOf(String(v))),
      tickvals: categories.map((_, i) => i),
      ticktext: categories.map(plain),
    };
  }

  function problem(box, text) {
    const p = document.createElement("p");
    p.className = "error plot-note";
    p.textContent = text;
    box.replaceChildren(p);
  }

  async function draw() {
    const metric = metricSelect.value, param = paramSelect.value;
    const done = results.filter(
      (run) => run.state === "succeeded" && run.metrics && isNumber(run.metrics[metric]));
    note.textContent = done.length
      ? `${done.length} of ${results.length} runs have a value of ${metric}.`
      : "Runs appear here as they succeed.";
    if (done.length === 0) {
      scatterBox.replaceChildren();
      parallelBox.replaceChildren();
      return;
    }
    let Plotly;
    try {
      Plotly = await window.SimyardPlots.loadLibrary();
    } catch (error) {
      problem(scatterBox, `The chart cannot be drawn: ${error.message}.`);
      return;
    }
    const x = done.map((run) => run.params[param]);
    const y = done.map((run) => run.metrics[metric]);
    await Plotly.react(
      scatterBox,
      [{
        type: "scatter", mode: "markers", name: plain(metric),
        x: x.map((v) => (isNumber(v) ? v : plain(v))), y,
        text: done.map((run) => `#${run.id}`),
        hovertemplate: `%{text}<br>${plain(param)}=%{x}<br>${plain(metric)}=%{y}<extra></extra>`,
        marker: { size: 10, color: color("--accent") || "#1f77b4" },
      }],
      layout({
        xaxis: { ...layout({}).xaxis, title: { text: plain(param) } },
        yaxis: { ...layout({}).yaxis, title: { text: plain(metric) } },
      }),
      { responsive: true, displaylogo: false },
    );
    try {
      const dims = data.axes.map((axis) => dimension(axis, done.map((run) => run.params[axis])));
      dims.push(dimension(metric, y));
      await Plotly.react(
        parallelBox,
        [{
          type: "parcoords", dimensions: dims,
          line: { color: y, colorscale: "Viridis", showscale: true,
                  colorbar: { title: { text: plain(metric) } } },
        }],
        layout({ margin: { t: 48, r: 64, b: 24, l: 64 } }),
        { responsive: true, displaylogo: false },
      );
    } catch (error) {
      problem(parallelBox, `The parallel coordinates cannot be drawn here: ${error.message}.`);
    }
  }

  metricSelect.addEventListener("change", draw);
  paramSelect.addEventListener("change", draw);
  document.addEventListener("sweep:update", (event) => {
    const fresh = event.detail.runs.map((run) => ({
      id: run.id, state: run.state, params: run.params, metrics: run.metrics,
    }));
    const before = JSON.stringify(results);
    results = fresh;
    if (JSON.stringify(results) !== before) draw();
  });
  draw();
})();
