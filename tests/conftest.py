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


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    _gcloud_or_skip()
    emu = Emulator("pubsub", PROJECT, log_path=tmp_path_factory.mktemp("pubsub") / "emulator.log").start()
    old = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
    try:
        yield emu
    finally:
        emu.stop()
        if old is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = old


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    _gcloud_or_skip()
    emu = Emulator("firestore", PROJECT, log_path=tmp_path_factory.mktemp("firestore") / "emulator.log").start()
    old = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emu.host
    try:
        yield emu
    finally:
        emu.stop()
        if old is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = old


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
