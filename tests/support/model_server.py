"""A real HTTP file server on loopback with Range support, for model downloads in tests and benchmarks.

Serves files from a directory (GET, HEAD, `Range: bytes=N-` / `N-M` -> 206), logs every request
(method, path, Range, Authorization), and can inject the faults a model sync must survive: a
connection dropped after N bytes, a required bearer token, a throttled rate, a redirect, a body whose
length is not announced.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0


@dataclass
class Faults:
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing (once)
    tokens: dict[str, str] = field(default_factory=dict)  # path -> required bearer token
    rate: int = 0  # bytes/s per response, 0 = unlimited
    redirects: dict[str, str] = field(default_factory=dict)  # path -> absolute URL (302)
    unannounced: set[str] = field(default_factory=set)  # paths sent without Content-Length, ended by closing


class ModelServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests: list[Request] = []
        self.faults = Faults()
        self.in_flight = self.max_in_flight = 0  # concurrent GET bodies being sent
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # requests are recorded in server.requests instead
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool):
                record = Request(self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization"))
                server.requests.append(record)
                path = self.path.split("?", 1)[0]
                if path in server.faults.redirects:
                    record.status = 302
                    self.send_response(302)
                    self.send_header("Location", server.faults.redirects[path])
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                required = server.faults.tokens.get(path)
                if required and self.headers.get("Authorization") != f"Bearer {required}":
                    return self._status(record, 401)
                file = server.root / path.lstrip("/")
                if not file.is_file():
                    return self._status(record, 404)
                size = file.stat().st_size
                start, end = 0, size - 1
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    end = int(match.group(2)) if match.group(2) else size - 1
                    if start >= size:
                        return self._status(record, 416)
                record.status = 206 if match else 200
                self.send_response(record.status)
                if path in server.faults.unannounced:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                if match:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if body:
                    self._send_file(file, start, end - start + 1, path)

            def _send_file(self, file: Path, start: int, length: int, path: str):
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._send_range(file, start, length, path)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send_range(self, file: Path, start: int, length: int, path: str):
                drop = server.faults.drop_after.pop(path, None)
                rate = server.faults.rate
                step = (64 << 10) if rate else (1 << 20)
                sent, began = 0, time.monotonic()
                with open(file, "rb") as handle:
                    handle.seek(start)
                    while sent < length:
                        if rate:  # pace before writing, so the last byte leaves when the response is over
                            ahead = sent / rate - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)
                        chunk = handle.read(min(step, length - sent))
                        if drop is not None and sent + len(chunk) >= drop:
                            self.wfile.write(chunk[: max(drop - sent, 0)])
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)

            def _status(self, record: Request, code: int):
                record.status = code
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_model_file(path: Path, size: int, seed: int = 0) -> str:
    """A file of `size` pseudo-random bytes (fast: a repeated 1 MiB block with a per-block counter); returns sha256."""
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * (1 << 15)  # 1 MiB
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        written, counter = 0, 0
        while written < size:
            piece = (counter.to_bytes(8, "little") + block[8:])[: size - written]
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
            counter += 1
    os.chmod(path, 0o644)
    return digest.hexdigest()


def make_safetensors(path: Path, floats: int = 4096) -> tuple[str, int]:
    """A small but valid .safetensors file (one F32 tensor); returns (sha256, size)."""
    import hashlib
    import json
    import struct

    header = json.dumps({"weight": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]},
                         "__metadata__": {"format": "pt"}}).encode()
    data = struct.pack("<Q", len(header)) + header + struct.pack(f"<{floats}f", *(i / floats for i in range(floats)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)
