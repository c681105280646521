"""Fixtures for the trainer's tests: one tiny model per session, small datasets, the storage emulators.

Most runs call `trainer.train.main(argv)` in-process (a run of the tiny model takes ~2 s there, against
~10 s of imports for a subprocess); the tests that are about the process itself (SIGTERM, the CLI,
`python trainer/train.py`) start one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from trainer_testlib import (
    VENV_BIN,
    Run,
    chat_rows,
    free_port,
    stop_group,
    wait_http,
    write_jsonl,
)

from tests.fakes.s3 import iam_world, moto_server, s3_env

# Read by gcsfs when it is imported; without it every bucket costs a 60 s stall against the emulator.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from trainer import tiny_model as tm

    return tm.write(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def chat_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", chat_rows())


@pytest.fixture
def train_inproc(capsys):
    """Run the trainer in this process; returns a Run with its stdout (PROGRESS lines) and stderr."""
    from trainer import train

    def _run(*argv: str) -> Run:
        capsys.readouterr()
        code = train.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return _run


@pytest.fixture(scope="session")
def gcs_emulator():
    """gcp-storage-emulator on a free port; yields the env that points gcsfs at it."""
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/storage/v1/b", proc)
        env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        yield env
    finally:
        stop_group(proc)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free port; yields the env that points s3fs at it (dummy credentials)."""
    with moto_server() as endpoint:
        yield s3_env(endpoint)


@pytest.fixture(scope="session")
def s3_iam_server():
    """A moto server of its own that enforces IAM (tests/fakes/s3.py `iam_world`): yields {"endpoint",
    "users": {name: {"key", "secret"}}, "buckets", "role_arn"}."""
    with moto_server() as endpoint:
        yield iam_world(endpoint)
