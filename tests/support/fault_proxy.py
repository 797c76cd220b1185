"""A TCP proxy on 127.0.0.1 in front of a server, injecting connection faults for tests.

    proxy = FaultProxy(("127.0.0.1", upstream_port)).start()
    proxy.reset_next(1)   # the next connection is reset (RST via SO_LINGER 0) before forwarding
    proxy.delay(0.5)      # each new connection's first byte is held 0.5 s before going upstream
    ...
    proxy.stop()

Counters: ``connections`` (accepted), ``resets`` (connections reset), ``forwarded`` (connections
forwarded upstream). Bounded: at most ``max_connections`` live connections (more are reset),
every socket has a timeout, ``stop()`` closes everything and joins the threads.
"""

from __future__ import annotations

import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], max_connections: int = 128, idle_timeout: float = 60.0):
        self.upstream = upstream
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections = self.resets = self.forwarded = 0
        self._reset_pending = 0
        self._delay = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)

    # -- control ------------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        self._accept_thread.start()
        return self

    def reset_next(self, n: int = 1) -> None:
        """Reset the next ``n`` accepted connections (after reading what the client sends first)."""
        with self._lock:
            self._reset_pending = max(0, int(n))

    def delay(self, seconds: float) -> None:
        """Hold each new connection's first byte for ``seconds`` before forwarding it upstream."""
        with self._lock:
            self._delay = max(0.0, float(seconds))

    def clear(self) -> None:
        with self._lock:
            self._reset_pending, self._delay = 0, 0.0

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        self._accept_thread.join(timeout) if self._accept_thread.is_alive() else None
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- internals ----------------------------------------------------------------------------

    def _track(self, sock):
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock):
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                reset = self._reset_pending > 0 or len(self._sockets) >= 2 * self.max_connections
                if self._reset_pending > 0:
                    self._reset_pending -= 1
                delay = self._delay
                self._threads = [t for t in self._threads if t.is_alive()]
            self._track(client)
            target = self._reset if reset else self._forward
            thread = threading.Thread(target=target, args=(client, delay), name="fault-proxy-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _reset(self, client, _delay):
        try:
            client.settimeout(1.0)
            client.recv(65536)  # let the client send its request, so the reset comes after it
        except OSError:
            pass
        try:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        with self._lock:
            self.resets += 1
            self._sockets.discard(client)
        try:
            client.close()  # no shutdown(): with SO_LINGER 0 the close sends an RST, not a FIN
        except OSError:
            pass

    def _forward(self, client, delay):
        upstream = None
        try:
            client.settimeout(self.idle_timeout)
            first = client.recv(65536)
            if not first:
                return
            if delay:
                self._stopping.wait(delay)
            if self._stopping.is_set():
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(self.idle_timeout)
            self._track(upstream)
            with self._lock:
                self.forwarded += 1
            upstream.sendall(first)
            back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
            back.start()
            self._pipe(client, upstream)
            back.join(self.idle_timeout)
        except OSError:
            pass
        finally:
            self._untrack(client)
            if upstream is not None:
                self._untrack(upstream)

    def _pipe(self, src, dst):
        try:
            while not self._stopping.is_set():
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # either side finishing ends the connection: wake the other direction's recv too
            for sock in (dst, src):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv(); close() alone does not
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
