"""The app behind a real uvicorn on 127.0.0.1, configured as `python app.py` configures it.

For what FastAPI's TestClient cannot show: real socket peers, uvicorn's own header handling,
the response headers uvicorn adds, and uvicorn's log records.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import uvicorn

from security import server_options


@contextmanager
def serve(app: Any, log_level: str = "info", **options: Any) -> Iterator[str]:
    """Run `app` (lifespan included) until the block ends; yields its base URL. `options` go to
    server_options() (shorter timeouts, fewer connections).

    log_config=None leaves logging alone, so uvicorn's records reach pytest's log capture."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, workers=1, log_config=None, log_level=log_level,
                            **server_options(**options))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
