"""Shared fixtures: the real Pub/Sub and Firestore emulators (started once per session, each in its own
process group on a free port, stopped by group), and an embedded api served over real HTTP."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from functions.local_stack import Emulator

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
    served: list[ServedApp] = []

    def _serve(app) -> ServedApp:
        s = ServedApp(app)
        served.append(s)
        return s

    yield _serve
    for s in served:
        s.close()


@pytest.fixture
def repo_tmp(tmp_path: Path) -> Path:
    return tmp_path
