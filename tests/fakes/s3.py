"""moto's S3 (and IAM/STS) server for the tests: on a free port, in its own process group, ready when it
answers. `moto_server()` is a plain S3 accepting any key; `iam_world(endpoint)` then builds the IAM world
of the per-source credential tests and switches IAM enforcement on (each user and the role reach one
bucket only; the ambient identity reaches none but may assume the role).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from functions.dev.local_stack import free_port, stop_group, wait_http

VENV_BIN = Path(sys.executable).parent
DUMMY_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

# Each user (and the role) may reach one bucket only.
IAM_BUCKETS = {"data-reader": "iam-data", "artifact-writer": "iam-artifacts", "role": "iam-role-data"}
IAM_ROLE_NAME = "studio-dataset-role"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server; yields its endpoint URL (point s3fs/boto3 at it with AWS_ENDPOINT_URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/", 30, proc=proc)  # moto answers its root with the bucket list
        yield endpoint
    finally:
        stop_group(proc)


def s3_env(endpoint: str) -> dict[str, str]:
    """The environment that points s3fs at `endpoint` with dummy credentials (no IAM enforcement)."""
    return {"AWS_ENDPOINT_URL": endpoint, **DUMMY_ENV}


def _bucket_policy(bucket: str) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
    )


def iam_world(endpoint: str) -> dict[str, Any]:
    """Set up users, buckets and a role while moto is unauthenticated (its default), then make every later
    request prove its signature and pass its policies (`POST /moto-api/reset-auth 0`).

    Returns {"endpoint", "users": {name: {"key", "secret"}}, "buckets", "role_arn"}: `data-reader` reaches
    only iam-data, `artifact-writer` only iam-artifacts, `trainer-pod` (the ambient identity) no bucket but
    may assume the role, and the role reaches only iam-role-data."""
    import boto3

    common = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam, s3 = boto3.client("iam", **common), boto3.client("s3", **common)
    users = {}
    for user in ("data-reader", "artifact-writer", "trainer-pod"):
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        users[user] = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    for user in ("data-reader", "artifact-writer"):
        iam.put_user_policy(UserName=user, PolicyName="one-bucket", PolicyDocument=_bucket_policy(IAM_BUCKETS[user]))
    iam.put_user_policy(
        UserName="trainer-pod",
        PolicyName="assume",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}),
    )
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
    role_arn = iam.create_role(RoleName=IAM_ROLE_NAME, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName=IAM_ROLE_NAME, PolicyName="one-bucket", PolicyDocument=_bucket_policy(IAM_BUCKETS["role"]))
    for bucket in IAM_BUCKETS.values():
        s3.create_bucket(Bucket=bucket)
    # text/plain: a form content type would have Flask consume the body before moto reads it
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).read()
    return {"endpoint": endpoint, "users": users, "buckets": dict(IAM_BUCKETS), "role_arn": role_arn}
