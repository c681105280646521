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
    VENV_BIN, Run, chat_rows, free_port, stop_group, wait_http, write_jsonl,
)

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
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
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
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        stop_group(proc)


# The IAM world of the per-source credential tests: each user (and the role) may reach one bucket only.
IAM_BUCKETS = {"data-reader": "iam-data", "artifact-writer": "iam-artifacts", "role": "iam-role-data"}
IAM_ROLE_NAME = "studio-dataset-role"


def _bucket_policy(bucket: str) -> str:
    import json

    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]})


@pytest.fixture(scope="session")
def s3_iam_server():
    """A moto server of its own that enforces IAM: set up unauthenticated (moto's default), then
    `POST /moto-api/reset-auth 0` makes every later request prove its signature and pass its policies.

    Yields {"endpoint", "users": {name: {"key", "secret"}}, "buckets", "role_arn"}: `data-reader` reaches
    only iam-data, `artifact-writer` only iam-artifacts, `trainer-pod` (the ambient identity) no bucket
    but may assume the role, and the role reaches only iam-role-data.
    """
    import json
    import urllib.request

    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_http(f"{endpoint}/", proc)
        common = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "setup",
                  "aws_secret_access_key": "setup"}
        iam, s3 = boto3.client("iam", **common), boto3.client("s3", **common)
        users = {}
        for user in ("data-reader", "artifact-writer", "trainer-pod"):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            users[user] = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        for user in ("data-reader", "artifact-writer"):
            iam.put_user_policy(UserName=user, PolicyName="one-bucket", PolicyDocument=_bucket_policy(IAM_BUCKETS[user]))
        iam.put_user_policy(UserName="trainer-pod", PolicyName="assume", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
        role_arn = iam.create_role(RoleName=IAM_ROLE_NAME, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        iam.put_role_policy(RoleName=IAM_ROLE_NAME, PolicyName="one-bucket",
                            PolicyDocument=_bucket_policy(IAM_BUCKETS["role"]))
        for bucket in IAM_BUCKETS.values():
            s3.create_bucket(Bucket=bucket)
        # text/plain: a form content type would have Flask consume the body before moto reads it
        request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()
        yield {"endpoint": endpoint, "users": users, "buckets": dict(IAM_BUCKETS), "role_arn": role_arn}
    finally:
        stop_group(proc)
