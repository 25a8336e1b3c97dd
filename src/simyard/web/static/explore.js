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

  /** One axis of the parallel coordinates: each run's value placed between 0 (the least)
   * and 1 (the most), and the labels to write along it. Text values are spaced evenly. */
  function dimension(label, values) {
    if (values.every(isNumber)) {
      const low = Math.min(...values), high = Math.max(...values);
      const place = (v) => (high > low ? (v - low) / (high - low) : 0.5);
      const ticks = high > low ? [[0, low], [1, high]] : [[0.5, low]];
      return { label, places: values.map(place), ticks };
    }
    const categories = [...new Set(values.map(String))];
    const place = (v) =>
      categories.length > 1 ? categories.indexOf(String(v)) / (categories.length - 1) : 0.5;
    return { label, places: values.map(place), ticks: categories.map((c) => [place(c), c]) };
  }

  const VIRIDIS = [[68, 1, 84], [33, 145, 140], [253, 231, 37]];
  function shade(fraction) {
    const f = Math.min(Math.max(fraction, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(f), VIRIDIS.length - 2), t = f - i;
    const mix = VIRIDIS[i].map((c, k) => Math.round(c + (VIRIDIS[i + 1][k] - c) * t));
    return `rgb(${mix.join(",")})`;
  }

  /** Parallel coordinates drawn as lines over the axes (SVG: plotly's own parcoords needs
   * WebGL code that the Content-Security-Policy does not let run), coloured by the metric. */
  function parallelFigure(done, metric, y) {
    const dims = data.axes.map((axis) => dimension(axis, done.map((run) => run.params[axis])));
    dims.push(dimension(metric, y));
    const colour = dimension(metric, y).places;
    const traces = done.map((run, r) => ({
      type: "scatter", mode: "lines+markers", showlegend: false,
      x: dims.map((_, i) => i), y: dims.map((d) => d.places[r]),
      text: dims.map((d, i) =>
        `#${run.id} ${plain(d.label)}=${plain(i < data.axes.length ? run.params[d.label] : y[r])}`),
      hovertemplate: "%{text}<extra></extra>",
      line: { color: shade(colour[r]), width: 2 }, marker: { color: shade(colour[r]), size: 6 },
    }));
    const annotations = dims.flatMap((d, i) => d.ticks.map(([at, text]) => ({
      x: i, y: at, text: plain(isNumber(text) ? Number(text.toPrecision(4)) : text),
      showarrow: false, xanchor: "left", xshift: 6, font: { size: 11 },
    })));
    const fig = layout({ annotations, margin: { t: 16, r: 48, b: 48, l: 24 } });
    fig.xaxis = { ...fig.xaxis, tickvals: dims.map((_, i) => i),
                  ticktext: dims.map((d) => plain(d.label)), showgrid: true, zeroline: false };
    fig.yaxis = { ...fig.yaxis, visible: false, range: [-0.08, 1.08] };
    return [traces, fig];
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
      const [traces, fig] = parallelFigure(done, metric, y);
      await Plotly.react(parallelBox, traces, fig, { responsive: true, displaylogo: false });
    } catch (error) {
      problem(parallelBox, `The parallel coordinates cannot be drawn: ${error.message}.`);
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
