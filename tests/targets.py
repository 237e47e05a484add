"""Targets for connection tests that stay running: an HTTP endpoint that answers 200 after a delay and
counts the drivers that reached it, and a port that accepts and never answers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class SlowTarget:
    url: str
    arrivals: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def arrived(self) -> None:
        with self._lock:
            self.arrivals += 1

    async def wait_arrivals(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` drivers in all have reached the target. A test whose state is ``running`` may
        still be fetching its connection from the API; one that has arrived here no longer needs it."""
        deadline = time.monotonic() + timeout
        while self.arrivals < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.arrivals} of {count} drivers reached {self.url} in {timeout} s")
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def slow_http(delay: float) -> Iterator[SlowTarget]:
    target = SlowTarget("")

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            target.arrived()
            time.sleep(delay)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    target.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_listener(port: int = 0) -> Iterator[int]:
    """A TCP port that accepts every connection and never says a word (a hung server, a stuck proxy);
    ``port`` 0 picks a free one. Yields the port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
