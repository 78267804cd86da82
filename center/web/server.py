"""Serve an ASGI app with uvicorn in a background thread (the center service; tests, bench and the demo too)."""
from __future__ import annotations

import threading
import time

import socket

import uvicorn



# httptools parses HTTP several times faster than h11. The event loop stays asyncio's: with uvloop 0.23 some of
# 50 concurrent keep-alive connections stalled for seconds under load (p99 of the phone page 490 ms against
# 39 ms with asyncio, same machine and run; bench/center.py measures both the same way).
SERVER_OPTIONS = {"http": "httptools", "loop": "asyncio"}


class WebServer:
    """`WebServer(app).start()` → `.url`; `.stop()` shuts uvicorn down gracefully."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, **options):
        self.host, self.port = host, port or free_port(host)
        options = {**SERVER_OPTIONS, **options}
        self.config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning",
                                     lifespan="on", **options)
        self.server = uvicorn.Server(self.config)
        self._thread = threading.Thread(target=self.server.run, name=f"web-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15) -> "WebServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
