"""Shared fixtures: the real Pub/Sub and Firestore emulators (started once per session, each in its own
process group on a free port, stopped by group), and an embedded api served over real HTTP (a WSGI app
under werkzeug, or an ASGI app under uvicorn)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.dev.local_stack import Emulator

PROJECT = "test-project"


def _gcloud_or_skip() -> None:
    if shutil.which("gcloud") is None:
        pytest.fail("gcloud (with the emulators) is required for the emulator tests")


def _run_emulator(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """Start one emulator for the session, point the Google clients at it, stop its process group."""
    _gcloud_or_skip()
    emu = Emulator(kind, PROJECT, log_path=tmp_path_factory.mktemp(kind) / "emulator.log").start()
    old = os.environ.get(emu.env_var)
    os.environ[emu.env_var] = emu.host
    try:
        yield emu
    finally:
        emu.stop()
        if old is None:
            os.environ.pop(emu.env_var, None)
        else:
            os.environ[emu.env_var] = old


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from _run_emulator("pubsub", tmp_path_factory)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from _run_emulator("firestore", tmp_path_factory)


@pytest.fixture(scope="session")
def firestore_client(firestore_emulator: Emulator):
    from google.cloud import firestore

    client = firestore.Client(project=PROJECT)
    yield client
    client.close()


@pytest.fixture
def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


class ServedApp:
    """A WSGI app served over real HTTP on a free port, in a thread (werkzeug, threaded)."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def serve():
    """`serve(app)`: a WSGI app under werkzeug; `serve(app, asgi=True)`: an ASGI app under uvicorn. Each is
    stopped at the end of the test."""
    served: list[ServedApp | ServedAsgi] = []

    def _serve(app, *, asgi: bool = False) -> ServedApp | ServedAsgi:
        s = ServedAsgi(app) if asgi else ServedApp(app)
        served.append(s)
        return s

    yield _serve
    for s in served:
        s.close()


class ServedAsgi:
    """An ASGI app served over real HTTP on a free port, in a thread: uvicorn, configured as
    `functions.http.asgi.serve` configures it (lifespan off, no server header, uvloop/httptools when installed).

    uvicorn cannot be told port 0 and report the port it got, so the socket is bound here and handed to
    `Server.run(sockets=...)`. `close` stops the server (uvicorn's graceful stop), then the app (`close()`,
    when it has one: `AsgiApi` stops its stream threads there)."""

    def __init__(self, app, *, start_timeout: float = 10.0):
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        from functions.http.asgi import server_config

        config = server_config(app, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                self.sock.close()
                raise RuntimeError("uvicorn exited before it started serving")
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"uvicorn did not start within {start_timeout}s")
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()  # uvicorn closes it on a graceful stop; this covers a failed start
        close = getattr(self.app, "close", None)
        if close is not None:
            close()


@pytest.fixture
def repo_tmp(tmp_path: Path) -> Path:
    return tmp_path
