"""The HTTP client the CLI and Python users share."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from simyard.errors import Problem, SimyardError, ValidationFailed
from simyard.schemas import RunOut, SweepOut
from simyard.sdk import Run, Sweep


class ClientError(SimyardError):
    """The server refused a request or could not be reached; the message says why.

    ``status`` is the HTTP status of a refusal (None when the server was not reached)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    if response.status_code == 422 and isinstance(body, dict) and "errors" in body:
        raise ValidationFailed(
            [Problem(e["field"], e["message"]) for e in body["errors"]],
            [Problem(w["field"], w["message"]) for w in body.get("warnings", [])],
        )
    detail = body.get("detail", body) if isinstance(body, dict) else body
    raise ClientError(f"{response.status_code}: {detail}", response.status_code)


class Client:
    """Talks to one simyard server with one API token.

    Two families of methods: ``run``, ``sweep``, ``get``, ``get_sweep_of`` give typed
    :class:`simyard.sdk.Run` / :class:`simyard.sdk.Sweep` objects for Python users; the
    others answer the API's JSON as dicts (the command line prints those).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    @classmethod
    def from_login(cls, url: str | None = None) -> Client:
        """A client for ``url``, SIMYARD_URL or the server of the last ``simyard login``,
        with SIMYARD_TOKEN or the token that login stored."""
        from simyard.config import Settings

        settings = Settings()
        try:
            saved = json.loads(settings.credentials_file.read_text())
        except (OSError, ValueError):
            saved = {}
        saved = saved if isinstance(saved, dict) else {}
        url = url or settings.url or saved.get("url")
        if not url:
            raise ClientError("no server: run `simyard login URL` or set SIMYARD_URL")
        token = settings.token.get_secret_value() if settings.token else None
        if token is None and str(saved.get("url", "")).rstrip("/") == url.rstrip("/"):
            token = saved.get("token")
        if not token:
            raise ClientError(
                f"not logged in to {url}: run `simyard login {url}` or set SIMYARD_TOKEN"
            )
        return cls(url, token)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from None
        _raise_for(response)
        return response.json() if response.content else None

    # -------------------------------------------------------------- tokens, models

    def login(self, username: str, password: str) -> str:
        """A new token for ``username``."""
        answer = self._request("POST", "/tokens", json={"username": username, "password": password})
        return str(answer["token"])

    def models(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/models"))

    def add_model(self, model_dir: Path) -> dict[str, Any]:
        """Upload a model folder (as a tar.gz) for registration."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(model_dir.rglob("*")):
                if "__pycache__" in path.parts or ".git" in path.parts:
                    continue
                if path.is_file() or path.is_symlink():
                    tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
        buffer.seek(0)
        files = {"bundle": (f"{model_dir.name}.tar.gz", buffer, "application/gzip")}
        return dict(self._request("POST", "/models", files=files))

    # -------------------------------------------------------------- runs

    def _post_with_files(
        self, path: str, fields: Mapping[str, Any], files: Mapping[str, Path]
    ) -> Any:
        """POST ``fields`` as JSON; with ``files``, as a multipart form (objects as JSON text)."""
        given = {key: value for key, value in fields.items() if value is not None}
        if not files:
            return self._request("POST", path, json=given)
        data = {
            key: json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
            for key, value in given.items()
        }
        with ExitStack() as stack:
            opened = {
                key: (file.name, stack.enter_context(open(file, "rb")))
                for key, file in files.items()
            }
            return self._request("POST", path, data=data, files=opened)

    def _run_request(
        self,
        model: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, Path],
        validate: bool,
        notify: bool | None = None,
        **extra: Any,
    ) -> Any:
        name, _, version = model.partition("@")
        fields = {"model": name, "version": version or None, "params": dict(params),
                  "notify": notify, **extra}  # fmt: skip
        files = {f"inputs.{slot}": file for slot, file in inputs.items()}
        return self._post_with_files("/runs/validate" if validate else "/runs", fields, files)

    def create_run(
        self,
        model: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, Path] | None = None,
        *,
        notify: bool | None = None,
        name: str | None = None,
        notes: str | None = None,
        tags: list[str] | None = None,
        from_run: int | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:
        """Start a run of ``model`` (``name`` or ``name@version``); ValidationFailed if refused.

        ``notify`` overrides the owner's notification preferences for this run; ``from_run``
        starts from that run's parameters and inputs (``params`` and ``inputs`` replace
        some of them); ``name``, ``notes`` and ``tags`` label it; ``project``: started in
        that project of the user's.
        """
        labels = {"name": name, "notes": notes, "tags": tags or None, "from_run": from_run,
                  "project": project}  # fmt: skip
        return dict(self._run_request(model, params, inputs or {}, False, notify, **labels))

    def label_run(self, run_id: int, **labels: Any) -> dict[str, Any]:
        """Change a run's ``name``, ``notes`` or ``tags``."""
        return dict(self._request("PATCH", f"/runs/{run_id}", json=labels))

    def validate_run(
        self, model: str, params: Mapping[str, Any], inputs: Mapping[str, Path] | None = None
    ) -> dict[str, Any]:
        return dict(self._run_request(model, params, inputs or {}, validate=True))

    # -------------------------------------------------------------- sweeps

    def create_sweep(
        self,
        model: str,
        params: Mapping[str, Any],
        axes: Mapping[str, list[Any]] | None = None,
        *,
        mode: str = "grid",
        table: Path | None = None,
        inputs: Mapping[str, Path] | None = None,
        notify: bool | None = None,
        validate: bool = False,
    ) -> dict[str, Any]:
        """Start a sweep of ``model``: ``axes`` (``grid`` or ``zip``) or a CSV ``table``
        whose header names parameters and whose rows are the runs; ValidationFailed if
        any run would be refused (then none is created)."""
        name, _, version = model.partition("@")
        fields = {"model": name, "version": version or None, "params": dict(params),
                  "axes": dict(axes or {}), "mode": "table" if table else mode,
                  "notify": notify}  # fmt: skip
        files = {f"inputs.{slot}": file for slot, file in (inputs or {}).items()}
        if table is not None:
            files["table"] = table
        path = "/sweeps/validate" if validate else "/sweeps"
        return dict(self._post_with_files(path, fields, files))

    def get_sweep(self, sweep_id: int) -> dict[str, Any]:
        return dict(self._request("GET", f"/sweeps/{sweep_id}"))

    def cancel_sweep(self, sweep_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/sweeps/{sweep_id}/cancel"))

    # -------------------------------------------------------------- runs: list, look, act

    def runs(
        self,
        *,
        state: str | None = None,
        model: str | None = None,
        limit: int = 50,
        shared: bool = False,
        project: str | None = None,
    ) -> list[dict[str, Any]]:
        """The caller's runs; ``shared``: those others shared with them; ``project``: the
        project's."""
        given = {"state": state, "model": model, "limit": limit, "shared": shared,
                 "project": project}  # fmt: skip
        return list(self._request("GET", "/runs", params={k: v for k, v in given.items() if v}))

    def share(
        self, run_id: int, user: str | None = None, *, everyone: bool = False, undo: bool = False
    ) -> list[dict[str, Any]]:
        """Share the run read-only with ``user`` or every signed-in user (``undo``: unshare);
        every share of the run."""
        body: dict[str, Any] = {"everyone": True} if everyone else {"user": user}
        method = "DELETE" if undo else "POST"
        return list(self._request(method, f"/runs/{run_id}/shares", json=body))

    def get_run(self, run_id: int) -> dict[str, Any]:
        return dict(self._request("GET", f"/runs/{run_id}"))

    def cancel(self, run_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/runs/{run_id}/cancel"))

    def rerun(self, run_id: int, *, from_failed: bool = False) -> dict[str, Any]:
        return dict(
            self._request("POST", f"/runs/{run_id}/rerun", params={"from_failed": from_failed})
        )

    def log(self, run_id: int, task: str, offset: int = 0) -> tuple[bytes, int]:
        """Bytes of a task's log from ``offset``, and the offset to ask for next."""
        try:
            response = self.http.get(f"/runs/{run_id}/logs/{task}", params={"offset": offset})
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from None
        _raise_for(response)
        return response.content, int(response.headers.get("X-Log-Next-Offset", offset))

    def follow_log(self, run_id: int, task: str) -> Iterator[str]:
        """Lines of a task's log as they are printed, until the task ends."""
        with self.http.stream(
            "GET", f"/runs/{run_id}/logs/{task}/follow", timeout=None
        ) as response:
            _raise_for(response)
            event = "message"
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "end":
                        return
                    if event == "message":
                        yield json.loads(line[6:])
                    event = "message"

    def outputs(self, run_id: int) -> list[dict[str, Any]]:
        return list(self._request("GET", f"/runs/{run_id}/outputs"))

    def download_output(self, run_id: int, task: str, path: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.http.stream("GET", f"/runs/{run_id}/outputs/{task}/{path}") as response:
            _raise_for(response)
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)

    # -------------------------------------------------------------- typed, for Python users

    def run(
        self,
        model: str,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str | Path] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        notify: bool | None = None,
    ) -> Run:
        """Start a run of ``model`` (``name`` or ``name@version``); with ``wait``, return
        once it has ended. ValidationFailed names every problem when it is refused."""
        files = {slot: Path(path) for slot, path in (inputs or {}).items()}
        created = self.create_run(model, params or {}, files, notify=notify)
        run = Run(self, RunOut.model_validate(created))
        return run.wait(timeout) if wait else run

    def get(self, run_id: int) -> Run:
        """The run with this id."""
        return Run(self, RunOut.model_validate(self.get_run(run_id)))

    def sweep(
        self,
        model: str,
        axes: Mapping[str, list[Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str | Path] | None = None,
        *,
        mode: str = "grid",
        table: str | Path | None = None,
        wait: bool = False,
        timeout: float | None = None,
        notify: bool | None = None,
    ) -> Sweep:
        """Start a sweep: ``axes`` combined by ``mode`` (grid or zip), or a CSV ``table``;
        with ``wait``, return once every run has ended."""
        files = {slot: Path(path) for slot, path in (inputs or {}).items()}
        created = self.create_sweep(
            model, params or {}, axes, mode=mode, table=Path(table) if table else None,
            inputs=files, notify=notify,
        )  # fmt: skip
        sweep = Sweep(self, SweepOut.model_validate(created))
        return sweep.wait(timeout) if wait else sweep
