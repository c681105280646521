"""Per-source credentials: each `--dataset_file` read, and the artifacts written, with credentials of their own.

The launcher hands the trainer one secret environment variable, `TRAINING_PLATFORM_CREDENTIALS`
(`trainer.flags.CREDENTIALS_ENV`; it travels like HF_TOKEN: the per-job Kubernetes Secret, the local
process's environment, a Vertex Secret Manager secret), holding JSON:

    {"datasets": [null | creds, ...],   # datasets[i] belongs to the i-th --dataset_file
     "artifacts": null | creds}         # --upload_output_to (and its checkpoints) and --log_uri

    creds = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"?, "aws_region"?}
          | {"role_arn", "aws_region"?}

A source without credentials uses the ambient identity (workload identity, the pod's role, the
environment's AWS_* keys) exactly as before. What comes out of here is fsspec storage options for
s3fs; the endpoint (`AWS_ENDPOINT_URL`) is never one of them, it stays the environment's.

A role ARN is assumed with the trainer's own (ambient) identity through STS (`boto3` `sts.assume_role`;
boto3 takes the endpoint from `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`, so moto answers in the tests).
The first assumption happens here, synchronously, so a role the pod may not assume fails at start-up with
a clear message; after that the credentials are botocore refreshable credentials inside the aiobotocore
session s3fs uses, so a run that outlasts them (an hour by default) assumes the role again before they
expire (botocore refreshes 15 minutes ahead) instead of failing its final upload.

No value is ever part of an error message: problems name the entry (`datasets[1].aws_secret_access_key`)
and what is wrong with it. Every value is also registered with `trainer.progress` for redaction, and so
are the temporary keys STS hands out.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trainer import flags, progress

KEY_FIELDS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region")
ROLE_FIELDS = ("role_arn", "aws_region")
# The job's id, when the launcher passes it (the role session's name shows up in CloudTrail); reserved prefix.
JOB_ID_ENV = "TRAINING_PLATFORM_JOB_ID"
ROLE_SESSION_SECONDS = 3600


class CredentialsError(Exception):
    """TRAINING_PLATFORM_CREDENTIALS cannot be used; the message names the entry, never a value."""


@dataclass(frozen=True)
class Creds:
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str | None = None
    role_arn: str | None = None


def _parse_creds(value: Any, where: str) -> Creds | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CredentialsError(f"{where} must be an object or null, got {type(value).__name__}")
    allowed = ROLE_FIELDS if "role_arn" in value else KEY_FIELDS
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        if "role_arn" in value and set(unknown) & set(KEY_FIELDS):
            raise CredentialsError(f"{where}: give either role_arn or AWS keys, not both")
        raise CredentialsError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
    for key, item in value.items():
        optional = key in ("aws_session_token", "aws_region")
        if item is None and optional:
            continue
        if not isinstance(item, str) or not item.strip():
            raise CredentialsError(f"{where}.{key} must be a non-empty string")
    if "role_arn" in value:
        if not value["role_arn"].startswith("arn:"):
            raise CredentialsError(f"{where}.role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return Creds(role_arn=value["role_arn"], region=value.get("aws_region"))
    for required in ("aws_access_key_id", "aws_secret_access_key"):
        if not value.get(required):
            raise CredentialsError(f"{where}.{required} is required (or give role_arn)")
    return Creds(
        access_key_id=value["aws_access_key_id"],
        secret_access_key=value["aws_secret_access_key"],
        session_token=value.get("aws_session_token"),
        region=value.get("aws_region"),
    )


@dataclass(frozen=True)
class SourceCredentials:
    """The parsed variable: one entry (or None) per --dataset_file, and the artifacts'."""

    datasets: tuple[Creds | None, ...] = ()
    artifacts: Creds | None = None

    def dataset(self, index: int) -> Creds | None:
        return self.datasets[index] if index < len(self.datasets) else None


def parse(text: str | None, n_datasets: int) -> SourceCredentials:
    """The variable's value checked against the contract; None or empty means no per-source credentials."""
    if text is None or not text.strip():
        return SourceCredentials()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:  # e.msg and the position only: the document is secret
        raise CredentialsError(f"{flags.CREDENTIALS_ENV} is not valid JSON ({e.msg} at position {e.pos})") from None
    if not isinstance(doc, dict):
        raise CredentialsError(f"{flags.CREDENTIALS_ENV} must be a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"datasets", "artifacts"})
    if unknown:
        raise CredentialsError(f"{flags.CREDENTIALS_ENV}: unknown key {unknown[0]!r} (allowed: datasets, artifacts)")
    datasets = doc.get("datasets")
    datasets = [] if datasets is None else datasets
    if not isinstance(datasets, list):
        raise CredentialsError(f"{flags.CREDENTIALS_ENV}: datasets must be a list, got {type(datasets).__name__}")
    if len(datasets) > n_datasets:
        raise CredentialsError(
            f"{flags.CREDENTIALS_ENV}: {len(datasets)} dataset entries for {n_datasets} --dataset_file(s): one entry (or null) per --dataset_file, in order"
        )
    parsed = tuple(_parse_creds(item, f"datasets[{i}]") for i, item in enumerate(datasets))
    return SourceCredentials(datasets=parsed, artifacts=_parse_creds(doc.get("artifacts"), "artifacts"))


def from_env(n_datasets: int, environ: Mapping[str, str] | None = None) -> SourceCredentials:
    env = os.environ if environ is None else environ
    return parse(env.get(flags.CREDENTIALS_ENV), n_datasets)


def problems(creds: SourceCredentials, dataset_files: list[str], artifact_uris: list[str]) -> list[str]:
    """AWS credentials only make sense for s3:// URIs: say so rather than ignore them."""
    out = []
    for i, uri in enumerate(dataset_files):
        if creds.dataset(i) is not None and not uri.lower().startswith("s3://"):
            out.append(f"{flags.CREDENTIALS_ENV} datasets[{i}] holds AWS credentials, but --dataset_file {uri} is not an s3:// URI")
    if creds.artifacts is not None:
        for uri in artifact_uris:
            if not uri.lower().startswith("s3://"):
                out.append(f"{flags.CREDENTIALS_ENV} artifacts holds AWS credentials, but {uri} is not an s3:// URI")
    return out


# ---- storage options ---------------------------------------------------------------------------------


def session_name(environ: Mapping[str, str] | None = None) -> str:
    """The STS role session's name: the job's id where the launcher passes it (STS allows [\\w+=,.@-], 2-64)."""
    env = os.environ if environ is None else environ
    name = re.sub(r"[^\w+=,.@-]", "-", env.get(JOB_ID_ENV) or "training-platform-trainer")[:64]
    return name if len(name) >= 2 else "training-platform-trainer"


def assume_role(role_arn: str, region: str | None, where: str) -> dict[str, str]:
    """One STS AssumeRole with the ambient identity, as botocore credential metadata."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sts = boto3.session.Session().client("sts", region_name=region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1")
        answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name(), DurationSeconds=ROLE_SESSION_SECONDS)["Credentials"]
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        raise CredentialsError(f"{where}.role_arn: the trainer's identity could not assume the role ({code})") from None
    except BotoCoreError as e:
        raise CredentialsError(f"{where}.role_arn: STS could not be reached ({type(e).__name__})") from None
    for secret in (answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"]):
        progress.add_secret(secret)
    expiry = answer["Expiration"]
    if isinstance(expiry, datetime):
        expiry = expiry.astimezone(UTC).isoformat()
    return {"access_key": answer["AccessKeyId"], "secret_key": answer["SecretAccessKey"], "token": answer["SessionToken"], "expiry_time": expiry}


def _role_session(creds: Creds, where: str):
    """An aiobotocore session whose only credentials are the role's, refreshed before they expire."""
    import asyncio

    from aiobotocore.credentials import AioCredentialResolver, AioRefreshableCredentials
    from aiobotocore.session import AioSession

    first = assume_role(creds.role_arn, creds.region, where)

    async def refresh() -> dict[str, str]:
        return await asyncio.to_thread(assume_role, creds.role_arn, creds.region, where)

    class AssumedRole:
        METHOD = "training-platform-assume-role"
        CANONICAL_NAME = METHOD

        async def load(self):
            return AioRefreshableCredentials.create_from_metadata(first, refresh_using=refresh, method=self.METHOD)

    session = AioSession()
    session.register_component("credential_provider", AioCredentialResolver([AssumedRole()]))
    return session


_sessions: dict[tuple[Creds, str], Any] = {}
_sessions_lock = threading.Lock()


def clear_sessions() -> None:
    """Forget the assumed roles (a process runs one job; tests run many in one process)."""
    with _sessions_lock:
        _sessions.clear()


def storage_options(creds: Creds | None, where: str) -> dict[str, Any] | None:
    """s3fs options for one source (None: the ambient identity). The same Creds gives the same options
    object (and so the same fsspec instance, which caches by its arguments)."""
    if creds is None:
        return None
    options: dict[str, Any] = {}
    if creds.region:
        options["client_kwargs"] = {"region_name": creds.region}
    if creds.role_arn:
        with _sessions_lock:
            session = _sessions.get((creds, where))
            if session is None:
                session = _sessions[(creds, where)] = _role_session(creds, where)
        options["session"] = session
        return options
    options["key"] = creds.access_key_id
    options["secret"] = creds.secret_access_key
    if creds.session_token:
        options["token"] = creds.session_token
    return options


@dataclass
class Resolved:
    """Storage options per dataset index and for the artifacts, built once per run."""

    datasets: list[dict[str, Any] | None]
    artifacts: dict[str, Any] | None


def resolve(creds: SourceCredentials, n_datasets: int) -> Resolved:
    return Resolved(
        datasets=[storage_options(creds.dataset(i), f"datasets[{i}]") for i in range(n_datasets)], artifacts=storage_options(creds.artifacts, "artifacts")
    )
