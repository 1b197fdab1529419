"""Serving a test double (fake Binance, fake Telegram) on 127.0.0.1 from a background thread."""
from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_in_background(server: ThreadingHTTPServer, name: str) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return thread


def shut_down(server: ThreadingHTTPServer | None, thread: threading.Thread | None) -> None:
    """Stop accepting, close the socket, and wait for the serving thread."""
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join()
