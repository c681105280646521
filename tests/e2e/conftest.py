"""Shared by the e2e tests: the tiny model (built once per module, no downloads) and an in-process embedded
platform (SQLite, inline bus, local backend) over real HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.dev.embedded import build_embedded
from functions.wiring import Container
from shared.settings import Settings
from tests.integration.conftest import wsgi


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer import tiny_model

    return tiny_model.write(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def platform(tmp_path: Path, serve):
    settings = Settings(
        SQLITE_PATH=str(tmp_path / "jobs.db"),
        DEFAULT_TRAINING_BACKEND="local",
        LOCAL_ALLOWED_ROOTS=f"{tmp_path}:/tmp",
        RECONCILE_INTERVAL_SECONDS="0",
        LAUNCH_RETRY_BASE_SECONDS="0.05",
    )
    container: Container = build_embedded(settings)
    container.api.follow_poll_seconds = 0.1
    served = serve(wsgi(container))
    yield served.url, container, tmp_path
    container.shutdown()
    container.bus.stop()
