"""The loopback HTTP server under the process-level fakes (FakeOpenAI, FakeGitHubServer): one thread per
connection, each tracked, so that `stop()` can stop accepting, cut open (keep-alive) connections and join every
thread within JOIN_SECONDS, and report the ones that did not stop instead of leaking them into later tests."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
POLL_SECONDS = 0.05  # how quickly the accept loop notices a stop
JOIN_SECONDS = 5.0  # how long stop() waits for a connection thread (e.g. a responder that never returns)


class Loopback(ThreadingHTTPServer):
    """Bound at construction (so the port is known), serving between `start()` and `stop()`. Handlers reach
    their fake as `self.server.owner`; `report` hears every problem of the server itself."""

    daemon_threads = True
    block_on_close = False  # stop() cuts and joins the connection threads itself

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, name: str, owner: Any, report: Callable[[str], object]
    ) -> None:
        self.name = name
        self.owner = owner
        self._report = report
        self._state = threading.Lock()  # guards the two collections below
        self._connections: set[socket.socket] = set()
        self._connection_threads: list[threading.Thread] = []
        self._serve_thread: threading.Thread | None = None
        super().__init__((HOST, 0), handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        if self._serve_thread is not None:
            raise RuntimeError(f"{self.name} serves once")
        self._serve_thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, name=f"{self.name}:{self.port}"
        )
        self._serve_thread.daemon = True
        self._serve_thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open connections, join every thread within JOIN_SECONDS (stragglers reported)."""
        if self._serve_thread is not None:
            self.shutdown()
            self._serve_thread.join(JOIN_SECONDS)
        with self._state:
            for connection in self._connections:
                cut(connection)
            threads, self._connection_threads = self._connection_threads, []
        self.server_close()
        deadline = time.monotonic() + JOIN_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._report(f"{thread.name} did not stop within {JOIN_SECONDS} s")

    # socketserver's hooks

    def process_request(self, request: Any, client_address: Any) -> None:
        """ThreadingMixIn's, with named threads that are tracked (the mixin does not join daemon threads)."""
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name=f"{self.name}:{self.port}:connection"
        )
        thread.daemon = True
        with self._state:
            self._connection_threads = [t for t in self._connection_threads if t.is_alive()]
            self._connection_threads.append(thread)
            self._connections.add(request)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._state:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client going away is normal; anything else is a bug in the fake
            self._report(f"the {self.name} server failed: {error!r}")


def cut(connection: socket.socket) -> None:
    """End a connection now (the client sees it closed), whatever its thread is doing."""
    with contextlib.suppress(OSError):  # already closed by the client
        connection.shutdown(socket.SHUT_RDWR)
