"""What a notification says: the outcome, and what the modeller needs to act on it."""

from __future__ import annotations

from html import escape

from simyard.domain.sweeps import counts
from simyard.domain.tables import Run, StoredFile, Sweep
from simyard.engine.result import FAILURE_WORDS, FailureKind
from simyard.manifest.units import format_size
from simyard.notify.base import Message

OUTCOME_WORDS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "timed_out": "timed out",
    "cancelled": "was cancelled",
}
MAX_PARAMS = 12
MAX_OUTPUTS = 30


def run_message(run: Run, outputs: list[StoredFile], *, base_url: str, event_id: int) -> Message:
    """The message about a run that has ended."""
    name = run.model_version.name
    link = f"{base_url.rstrip('/')}/runs/{run.id}"
    outcome = OUTCOME_WORDS.get(run.state, run.state)
    called = f" “{run.name}”" if run.name else ""
    subject = f"[simyard] {name} run {run.id}{called} {outcome}"
    took = ""
    if run.started_at and run.finished_at:
        took = f"{(run.finished_at - run.started_at).total_seconds():.1f} s"
    lines = [f"Run {run.id}{called} of {name} {run.model_version.version} {outcome}."]
    if run.tags:
        lines.append(f"Tags: {', '.join(run.tags)}")
    if took:
        lines.append(f"Duration: {took}")
    params = list(run.params.items())[:MAX_PARAMS]
    lines += ["", "Parameters:"] + [f"  {k} = {v}" for k, v in params]
    if warned := warning_lines(run):
        lines += ["", "Warnings:"] + [f"  {line}" for line in warned]
    if run.state == "succeeded":
        if run.metrics:
            lines += ["", "Metrics:"] + [f"  {k} = {v}" for k, v in run.metrics.items()]
        lines += ["", "Outputs:"] + [
            f"  {f.path} ({format_size(f.size)})" for f in outputs[:MAX_OUTPUTS]
        ]
        if len(outputs) > MAX_OUTPUTS:
            lines.append(f"  ... and {len(outputs) - MAX_OUTPUTS} more")
    elif run.error_kind:
        lines += ["", f"What happened: {failure_words(run.error_kind)}."]
        if run.error_task:
            lines.append(f"Failed task: {run.error_task}")
        if run.error_summary:
            lines += ["", run.error_summary]
    lines += ["", f"Open the run: {link}"]
    text = "\n".join(lines) + "\n"
    html = _html(text, link, f"Open run {run.id}")
    event = {
        "kind": f"run.{run.state}",
        "run_id": run.id,
        "model": name,
        "version": run.model_version.version,
        "state": run.state,
        "name": run.name,
        "tags": run.tags or [],
        "warnings": warning_lines(run),
        "params": run.params,
        "metrics": run.metrics,
        "error": {"kind": run.error_kind, "task": run.error_task, "summary": run.error_summary}
        if run.error_kind
        else None,
        "url": link,
        "outputs": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in outputs],
    }
    return Message(subject, text, html, event, message_id=f"<simyard-event-{event_id}@simyard>")


MAX_SWEEP_LINES = 200


def warning_lines(run: Run) -> list[str]:
    """What the run was warned about: at its start (soft limits, hooks), then by its tasks
    (lines matching a task's warning_patterns)."""
    lines = [f"{w.get('field')}: {w.get('message')}" for w in run.warnings or []]
    for task_run in run.task_runs:
        lines += [f"task {task_run.name}: {line}" for line in task_run.warnings or []]
    return lines


def failure_words(kind: str) -> str:
    """A failure kind in plain words."""
    return FAILURE_WORDS[FailureKind(kind)] if kind in FailureKind.__members__ else kind


def _html(text: str, link: str, label: str) -> str:
    """The HTML part: the plain text as it is, and the link as a link."""
    return (
        '<html><body style="font-family: sans-serif">'
        '<pre style="font-family: ui-monospace, monospace; white-space: pre-wrap">'
        f"{escape(text)}</pre>"
        f'<p><a href="{escape(link)}">{escape(label)}</a></p></body></html>'
    )


def sweep_message(sweep: Sweep, *, base_url: str, event_id: int) -> Message:
    """The one message about a sweep whose last run has ended: every run in a table."""
    name = sweep.model_version.name
    link = f"{base_url.rstrip('/')}/sweeps/{sweep.id}"
    runs = sweep.runs
    tally = counts(sweep)
    told = ", ".join(f"{n} {OUTCOME_WORDS.get(state, state)}" for state, n in sorted(tally.items()))
    subject = f"[simyard] {name} sweep {sweep.id} finished: {told}"
    lines = [f"Sweep {sweep.id} of {name} {sweep.model_version.version} finished: {told}."]
    started = [r.started_at for r in runs if r.started_at]
    ended = [r.finished_at for r in runs if r.finished_at]
    if started and ended:
        lines.append(f"Duration: {(max(ended) - min(started)).total_seconds():.1f} s")
    axes = list(sweep.axes)
    lines += ["", f"Runs ({sweep.mode} over {', '.join(axes)}):"]
    for run in runs[:MAX_SWEEP_LINES]:
        values = " ".join(f"{k}={run.params.get(k)}" for k in axes)
        line = f"  run {run.id}  {values}  {run.state}"
        if run.metrics:
            line += "  " + " ".join(f"{k}={v}" for k, v in run.metrics.items())
        elif run.error_kind:
            line += f"  {failure_words(run.error_kind)}"
            if run.error_task:
                line += f" in {run.error_task}"
        lines.append(line)
    if len(runs) > MAX_SWEEP_LINES:
        lines.append(f"  ... and {len(runs) - MAX_SWEEP_LINES} more")
    failed = [run for run in runs if run.error_summary]
    if failed:
        first = failed[0]
        lines += ["", f"First failure (run {first.id}):", first.error_summary or ""]
    lines += ["", f"Open the sweep: {link}"]
    text = "\n".join(lines) + "\n"
    event = {
        "kind": "sweep.finished",
        "sweep_id": sweep.id,
        "model": name,
        "version": sweep.model_version.version,
        "counts": dict(tally),
        "url": link,
        "runs": [
            {"run_id": r.id, "state": r.state, "params": r.params, "metrics": r.metrics}
            for r in runs
        ],
    }
    return Message(
        subject,
        text,
        _html(text, link, f"Open sweep {sweep.id}"),
        event,
        message_id=f"<simyard-event-{event_id}@simyard>",
    )
