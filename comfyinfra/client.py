"""A small, careful client for ComfyUI's HTTP API (as served by ComfyUI 0.3.x).

Every request has a timeout. Failures are classified into an exception hierarchy whose ``kind``
says what went wrong (``connection``, ``http_4xx``, ``http_5xx``, ``execution``, ``timeout``), so a
load test or smoke check can count them without parsing messages.

Retries happen only where they are safe:

* GET requests are retried on connection errors (refused, reset, dropped) and on 5xx responses,
  with a short exponential backoff.
* POST /prompt is retried only when the TCP connect itself failed (nothing was sent, so the prompt
  cannot have been queued twice). It is never retried after a response, after a reset of an
  established connection, on a read timeout, or on 4xx.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3.exceptions

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- errors -------------------------------------------------------------------------------------

class ComfyError(Exception):
    """Base of every error the client raises; ``kind`` classifies it."""

    kind = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConnectionFailed(ComfyError):
    kind = "connection"


class Timeout(ComfyError):
    kind = "timeout"


class HttpError(ComfyError):
    """A non-2xx response. For ComfyUI's 400 on POST /prompt, ``error`` and ``node_errors`` hold its
    validation report and ``str()`` renders it readably."""

    def __init__(self, method: str, url: str, status: int, body: str = "",
                 error: Any = None, node_errors: dict | None = None):
        self.method, self.url, self.status, self.body = method, url, status, body
        self.error = error
        self.node_errors = node_errors or {}
        self.kind = "http_4xx" if 400 <= status < 500 else "http_5xx"
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [f"{self.method} {self.url} -> HTTP {self.status}"]
        if isinstance(self.error, dict):
            etype, msg, details = (self.error.get(k) for k in ("type", "message", "details"))
            line = f"  error: {msg or ''}" + (f" [{etype}]" if etype else "")
            if details:
                line += f": {details}"
            lines.append(line)
        elif self.error:
            lines.append(f"  error: {self.error}")
        elif self.body:
            lines.append("  body: " + self.body.strip()[:500])
        lines.extend(format_node_errors(self.node_errors))
        return "\n".join(lines)


class ExecutionFailed(ComfyError):
    """The prompt was accepted but failed (or was interrupted) while running."""

    kind = "execution"

    def __init__(self, prompt_id: str, node_id=None, node_type=None, exception_message=None,
                 exception_type=None, interrupted=False, entry: dict | None = None):
        self.prompt_id, self.node_id, self.node_type = prompt_id, node_id, node_type
        self.exception_message = (exception_message or "").strip()
        self.exception_type = exception_type
        self.interrupted = interrupted
        self.entry = entry or {}
        what = "interrupted" if interrupted else "failed"
        where = f" at node {node_id} ({node_type})" if node_id is not None else ""
        detail = ""
        if self.exception_message or exception_type:
            detail = ": " + (f"{exception_type}: " if exception_type else "") + self.exception_message
        super().__init__(f"prompt {prompt_id} {what}{where}{detail}")


def format_node_errors(node_errors: dict | None) -> list[str]:
    """ComfyUI's ``node_errors`` as lines: node id, class_type, then each error's message/details."""
    lines = []
    for node_id, info in sorted((node_errors or {}).items(), key=lambda kv: str(kv[0])):
        info = info if isinstance(info, dict) else {"errors": [{"message": str(info)}]}
        lines.append(f"  node {node_id} ({info.get('class_type', '?')}):")
        for err in info.get("errors") or []:
            if not isinstance(err, dict):
                lines.append(f"    - {err}")
                continue
            text = err.get("message") or err.get("type") or "error"
            if err.get("details"):
                text += f": {err['details']}"
            if err.get("type"):
                text += f" [{err['type']}]"
            lines.append(f"    - {text}")
    return lines


# -- results ------------------------------------------------------------------------------------

@dataclass
class OutputImage:
    node_id: str
    filename: str
    subfolder: str
    type: str
    data: bytes = b""


@dataclass
class RunResult:
    prompt_id: str
    entry: dict
    images: list[OutputImage] = field(default_factory=list)
    latency_s: float = 0.0

    @property
    def outputs(self) -> dict:
        return self.entry.get("outputs") or {}


def png_ok(data: bytes, min_bytes: int = 1024) -> bool:
    """Smoke criterion for an output image: PNG signature, an IHDR chunk first with non-zero
    dimensions, and at least ``min_bytes`` bytes."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < max(min_bytes, 33):
        return False
    if data[:8] != PNG_SIGNATURE:
        return False
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        return False
    width, height = struct.unpack(">II", data[16:24])
    return width > 0 and height > 0


# -- client -------------------------------------------------------------------------------------

def _is_connect_error(exc: requests.RequestException) -> bool:
    """True when the TCP connect failed, so nothing of the request reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                          ConnectionRefusedError)):
            return True
        if isinstance(e, urllib3.exceptions.ProtocolError):
            return False  # the connection was established and then broke
        todo.extend([getattr(e, "reason", None), e.__cause__, e.__context__])
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return False


class ComfyClient:
    def __init__(self, base_url: str, timeout: float = 30, retries: int = 2, backoff_s: float = 0.2,
                 session: requests.Session | None = None):
        if not base_url.startswith(("http://", "https://")):
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff_s = backoff_s
        self.session = session or requests.Session()
        self.client_id = uuid.uuid4().hex
        # (method, path, status code or error kind) of every attempt, for tests and diagnostics
        self.attempts: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()

    # context manager / cleanup
    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transport --------------------------------------------------------------------------

    def _record(self, method, path, outcome):
        with self._lock:
            self.attempts.append((method, path, outcome))

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kw) -> requests.Response:
        url = self.base_url + path
        timeout = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            try:
                response = self.session.request(method, url, timeout=timeout, **kw)
            except requests.RequestException as exc:
                connect_failed = _is_connect_error(exc)
                if isinstance(exc, requests.Timeout) and not connect_failed:
                    self._record(method, path, "timeout")
                    raise Timeout(f"{method} {url}: no response within {timeout}s") from exc
                kind = "timeout" if isinstance(exc, requests.Timeout) else "connection"
                self._record(method, path, kind)
                retry_ok = method == "GET" or connect_failed
                if retry_ok and attempt < self.retries:
                    attempt += 1
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                    continue
                if kind == "timeout":
                    raise Timeout(f"{method} {url}: connect timed out after {timeout}s") from exc
                raise ConnectionFailed(f"{method} {url}: {_short(exc)}") from exc
            self._record(method, path, response.status_code)
            if response.status_code >= 500 and method == "GET" and attempt < self.retries:
                attempt += 1
                response.close()
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            if response.status_code >= 400:
                raise self._http_error(method, url, response)
            return response

    @staticmethod
    def _http_error(method, url, response) -> HttpError:
        body = response.text or ""
        error = node_errors = None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error, node_errors = payload.get("error"), payload.get("node_errors")
        return HttpError(method, url, response.status_code, body, error, node_errors)

    def _json(self, method, path, **kw):
        response = self._request(method, path, **kw)
        try:
            return response.json()
        except ValueError as exc:
            raise HttpError(method, self.base_url + path, response.status_code, response.text,
                            error=f"response is not JSON: {exc}") from exc

    # -- API --------------------------------------------------------------------------------

    def system_stats(self) -> dict:
        return self._json("GET", "/system_stats")

    def object_info(self, node_class: str | None = None) -> dict:
        return self._json("GET", "/object_info" + (f"/{node_class}" if node_class else ""))

    def queue(self) -> dict:
        return self._json("GET", "/queue")

    def submit(self, workflow: dict, client_id: str | None = None) -> str:
        """Queue an API-format workflow; returns its prompt_id. A 400 raises HttpError carrying
        ComfyUI's ``error`` and ``node_errors``."""
        if isinstance(workflow, dict) and isinstance(workflow.get("prompt"), dict):
            workflow = workflow["prompt"]  # accept a full /prompt body too
        body = {"prompt": workflow, "client_id": client_id or self.client_id}
        data = self._json("POST", "/prompt", data=json.dumps(body),
                          headers={"Content-Type": "application/json"})
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if not prompt_id:
            raise HttpError("POST", self.base_url + "/prompt", 200, json.dumps(data)[:500],
                            error="response has no prompt_id")
        return prompt_id

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of a prompt, or None while it is absent (queued, running, unknown)."""
        return self._history(prompt_id)

    def _history(self, prompt_id: str, timeout: float | None = None) -> dict | None:
        data = self._json("GET", f"/history/{prompt_id}", timeout=timeout)
        if isinstance(data, dict) and isinstance(data.get(prompt_id), dict):
            return data[prompt_id]
        return None

    def wait(self, prompt_id: str, timeout_s: float, poll_s: float = 0.25) -> dict:
        """Poll history until the prompt finished. Returns the entry on success; raises
        ExecutionFailed (error or interrupt) or Timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            entry = self._history(prompt_id, timeout=max(0.5, min(self.timeout, deadline - time.monotonic())))
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise execution_failure(prompt_id, entry)
                if status.get("completed", True) or status.get("status_str") == "success":
                    return entry
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"prompt {prompt_id} not finished after {timeout_s}s")
            time.sleep(min(poll_s, remaining))

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        params = {"filename": filename, "subfolder": subfolder or "", "type": type or "output"}
        return self._request("GET", "/view", params=params).content

    def run(self, workflow: dict, timeout_s: float, poll_s: float = 0.25) -> RunResult:
        """Submit, wait, and fetch every output image."""
        started = time.monotonic()
        prompt_id = self.submit(workflow)
        entry = self.wait(prompt_id, timeout_s, poll_s=poll_s)
        images = []
        for node_id, output in (entry.get("outputs") or {}).items():
            for image in (output or {}).get("images") or []:
                if not isinstance(image, dict) or "filename" not in image:
                    continue
                img = OutputImage(str(node_id), image["filename"], image.get("subfolder", ""),
                                  image.get("type", "output"))
                img.data = self.view(img.filename, img.subfolder, img.type)
                images.append(img)
        return RunResult(prompt_id, entry, images, time.monotonic() - started)


def execution_failure(prompt_id: str, entry: dict) -> ExecutionFailed:
    messages = (entry.get("status") or {}).get("messages") or []
    for item in reversed(messages):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict)):
            continue
        event, data = item
        if event == "execution_error":
            return ExecutionFailed(prompt_id, data.get("node_id"), data.get("node_type"),
                                   data.get("exception_message"), data.get("exception_type"), entry=entry)
        if event == "execution_interrupted":
            return ExecutionFailed(prompt_id, data.get("node_id"), data.get("node_type"),
                                   "execution interrupted", interrupted=True, entry=entry)
    return ExecutionFailed(prompt_id, exception_message="status_str is error", entry=entry)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
