// Charts of several runs overlaid (the compare page and the sweep page): each plot of the
// manifest drawn from every run's CSV output, traces named "<label> <column>".
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("overlay-data").textContent);
  const sources = data.runs.map((run) => ({
    label: run.label ?? `#${run.id}`,
    runId: run.id,
    outputs: run.outputs,
    color: run.color,
  }));

  function showError(text) {
    const line = document.getElementById("page-error");
    line.textContent = text;
    line.hidden = false;
  }

  data.plots.forEach(async (plot, index) => {
    const element = document.getElementById(`plot-${index}`);
    if (!element) return;
    try {
      await window.SimyardPlots.draw(element, plot, sources);
    } catch (error) {
      element.replaceChildren();
      showError(`The chart "${plot.title}" cannot be drawn: ${error.message}`);
    }
  });
})();
