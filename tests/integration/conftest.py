"""Fixtures for the api tests: a container over SQLite with a recording bus, served over real HTTP.

The `api` fixture serves each test twice: under Flask (`Api.__call__`, as functions-framework serves the
deployed function) and under the ASGI adapter (`functions.http.asgi.AsgiApi`, as the embedded default serves
it with uvicorn). The same assertions hold for both."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from functions.wiring import Container
from shared.adapters.sqlite_store import SqliteJobStore
from shared.errors import TransientError
from shared.settings import Settings


class RecordingBus:
    kind = "recording"

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict, dict, str | None]] = []
        self.fail = False

    def publish(self, topic: str, data: dict, *, attributes: dict | None = None, ordering_key: str | None = None) -> str:
        if self.fail:
            raise TransientError("bus down")
        self.messages.append((topic, data, attributes or {}, ordering_key))
        return str(len(self.messages))


def make_settings(**env: Any) -> Settings:
    base = {"K8S_TRAINING_IMAGE": "us-docker.pkg.dev/p/r/trainer:1", "VERTEX_PROJECT": "p", "VERTEX_IMAGE_URI": "img"}
    base.update(env)
    return Settings(**base)


def wsgi(container: Container) -> Flask:
    app = Flask("test-api")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
    def handle(path: str):  # noqa: ARG001
        return container.api(request)

    return app


SERVERS = ["flask", "asgi"]


def make_container(tmp_path: Path, **env: Any) -> tuple[RecordingBus, Container]:
    bus = RecordingBus()
    container = Container(settings=make_settings(**env), store=SqliteJobStore(tmp_path / f"{uuid.uuid4().hex}.db"), bus=bus)
    return bus, container


@pytest.fixture(params=SERVERS, ids=SERVERS)
def api(request: pytest.FixtureRequest, tmp_path: Path, serve):
    """`api(**env)` -> (url, bus, container): a fresh container, served by the server this run is for."""

    def _make(**env: Any):
        bus, container = make_container(tmp_path, **env)
        if request.param == "asgi":
            from functions.http.asgi import AsgiApi

            served = serve(AsgiApi(container.api), asgi=True)
        else:
            served = serve(wsgi(container))
        return served.url, bus, container

    return _make


@pytest.fixture(params=["sqlite", "firestore"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        s = SqliteJobStore(tmp_path / "jobs.db")
        yield s
        s.close()
    else:
        from shared.adapters.firestore_store import FirestoreJobStore

        client = request.getfixturevalue("firestore_client")
        prefix = request.getfixturevalue("unique_prefix")
        yield FirestoreJobStore(client, prefix)
