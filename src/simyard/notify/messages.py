"""What a notification says: the outcome, and what the modeller needs to act on it."""

from __future__ import annotations

from html import escape

from simyard.domain.tables import Run, StoredFile
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
    subject = f"[simyard] {name} run {run.id} {outcome}"
    took = ""
    if run.started_at and run.finished_at:
        took = f"{(run.finished_at - run.started_at).total_seconds():.1f} s"
    lines = [f"Run {run.id} of {name} {run.model_version.version} {outcome}."]
    if took:
        lines.append(f"Duration: {took}")
    params = list(run.params.items())[:MAX_PARAMS]
    lines += ["", "Parameters:"] + [f"  {k} = {v}" for k, v in params]
    if run.state == "succeeded":
        if run.metrics:
            lines += ["", "Metrics:"] + [f"  {k} = {v}" for k, v in run.metrics.items()]
        lines += ["", "Outputs:"] + [
            f"  {f.path} ({format_size(f.size)})" for f in outputs[:MAX_OUTPUTS]
        ]
        if len(outputs) > MAX_OUTPUTS:
            lines.append(f"  ... and {len(outputs) - MAX_OUTPUTS} more")
    elif run.error_kind:
        kind = FailureKind(run.error_kind) if run.error_kind in FailureKind.__members__ else None
        lines += ["", f"What happened: {FAILURE_WORDS[kind] if kind else run.error_kind}."]
        if run.error_task:
            lines.append(f"Failed task: {run.error_task}")
        if run.error_summary:
            lines += ["", run.error_summary]
    lines += ["", f"Open the run: {link}"]
    text = "\n".join(lines) + "\n"
    html = (
        '<html><body style="font-family: sans-serif">'
        '<pre style="font-family: ui-monospace, monospace; white-space: pre-wrap">'
        f"{escape(text)}</pre>"
        f'<p><a href="{escape(link)}">Open run {run.id}</a></p></body></html>'
    )
    event = {
        "kind": f"run.{run.state}",
        "run_id": run.id,
        "model": name,
        "version": run.model_version.version,
        "state": run.state,
        "params": run.params,
        "metrics": run.metrics,
        "error": {"kind": run.error_kind, "task": run.error_task, "summary": run.error_summary}
        if run.error_kind
        else None,
        "url": link,
        "outputs": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in outputs],
    }
    return Message(subject, text, html, event, message_id=f"<simyard-event-{event_id}@simyard>")
