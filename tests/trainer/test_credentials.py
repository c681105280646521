"""Per-source credentials (TRAINING_PLATFORM_CREDENTIALS): the contract, the storage options, and runs
against a moto server that enforces IAM (tests/trainer/conftest.py `s3_iam_server`), where the dataset
bucket, the artifact bucket and the role's bucket are each reachable with their own credentials only and
the ambient identity reaches none of them."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from trainer_testlib import FAST, chat_rows

from trainer import credentials, progress, storage
from trainer.flags import CREDENTIALS_ENV

pytestmark = pytest.mark.trainer

KEYS = {
    "aws_access_key_id": "AKIAEXAMPLEKEY01",
    "aws_secret_access_key": "s3cr3t-value-xyz",
    "aws_session_token": "session-token-abc",
    "aws_region": "eu-west-3",
}


# ---- the contract --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,text,n,message",
    [
        ("not json", "{datasets: [", 1, "is not valid JSON"),
        ("not an object", "[1]", 1, "must be a JSON object"),
        ("unknown top-level key", '{"dataset": []}', 1, "unknown key 'dataset'"),
        ("datasets not a list", '{"datasets": {}}', 1, "datasets must be a list"),
        ("more entries than sources", '{"datasets": [null, null]}', 1, "2 dataset entries for 1"),
        ("entry not an object", '{"datasets": ["AKIA-SECRETISH"]}', 1, "datasets[0] must be an object"),
        (
            "unknown key in entry",
            '{"artifacts": {"aws_access_key_id": "a1b2", "aws_secret_access_key": "c3d4", "password": "p4ss"}}',
            1,
            "artifacts: unknown key 'password'",
        ),
        ("key without secret", '{"datasets": [{"aws_access_key_id": "a1b2c3"}]}', 1, "datasets[0].aws_secret_access_key is required"),
        ("keys and role", '{"datasets": [{"role_arn": "arn:aws:iam::1:role/r", "aws_access_key_id": "a1b2"}]}', 1, "either role_arn or AWS keys"),
        ("role not an arn", '{"datasets": [{"role_arn": "my-role"}]}', 1, "datasets[0].role_arn must be an IAM role ARN"),
        (
            "empty secret",
            '{"datasets": [{"aws_access_key_id": "a1b2", "aws_secret_access_key": ""}]}',
            1,
            "datasets[0].aws_secret_access_key must be a non-empty string",
        ),
    ],
)
def test_malformed_variable_names_the_problem_never_the_value(name, text, n, message):
    with pytest.raises(credentials.CredentialsError) as err:
        credentials.parse(text, n)
    assert message in str(err.value), name
    for secret in ("AKIA-SECRETISH", "p4ss", "a1b2c3", "c3d4"):
        assert secret not in str(err.value)


def test_missing_variable_means_ambient_identity_and_entries_map_to_options():
    assert credentials.from_env(2, {}) == credentials.SourceCredentials()
    none = credentials.resolve(credentials.from_env(2, {}), 2)
    assert none.datasets == [None, None] and none.artifacts is None

    text = json.dumps({"datasets": [None, KEYS], "artifacts": {k: v for k, v in KEYS.items() if k != "aws_session_token"}})
    resolved = credentials.resolve(credentials.parse(text, 3), 3)
    assert resolved.datasets[0] is None and resolved.datasets[2] is None  # a short list: the rest ambient
    assert resolved.datasets[1] == {
        "key": "AKIAEXAMPLEKEY01",
        "secret": "s3cr3t-value-xyz",
        "token": "session-token-abc",
        "client_kwargs": {"region_name": "eu-west-3"},
    }
    assert resolved.artifacts == {"key": "AKIAEXAMPLEKEY01", "secret": "s3cr3t-value-xyz", "client_kwargs": {"region_name": "eu-west-3"}}


def test_credentials_for_a_source_that_is_not_s3_are_refused(tiny_model, chat_file, tmp_path, train_inproc, monkeypatch):
    monkeypatch.setenv(CREDENTIALS_ENV, json.dumps({"datasets": [KEYS]}))
    run = train_inproc("--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", tmp_path, "--dry_run")
    assert run.code == 2
    assert "datasets[0] holds AWS credentials, but --dataset_file" in run.stderr
    monkeypatch.setenv(CREDENTIALS_ENV, "{not json")
    run = train_inproc("--model_id", tiny_model, "--dataset_file", chat_file, "--output_dir", tmp_path, "--dry_run")
    assert run.code == 2 and f"{CREDENTIALS_ENV} is not valid JSON" in run.stderr


# ---- redaction -----------------------------------------------------------------------------------------


def test_every_credential_string_is_redacted_but_not_the_region():
    env = {CREDENTIALS_ENV: json.dumps({"datasets": [KEYS, {"role_arn": "arn:aws:iam::123456789012:role/r"}]})}
    text = "InvalidAccessKeyId: AKIAEXAMPLEKEY01 / s3cr3t-value-xyz / session-token-abc in eu-west-3 as arn:aws:iam::123456789012:role/r"
    assert progress.redact(text, env) == "InvalidAccessKeyId: *** / *** / *** in eu-west-3 as ***"
    # An unparseable variable is a secret as a whole.
    assert progress.redact("value {oops AKIA", {CREDENTIALS_ENV: "{oops AKIA"}) == "value ***"


def test_trainer_output_never_shows_a_credential_value(tiny_model, tmp_path, train_inproc, monkeypatch, s3_iam_server):
    """An error that echoes the key id (here: a URI that happens to contain it) is printed redacted."""
    _ambient(monkeypatch, s3_iam_server)
    reader = s3_iam_server["users"]["data-reader"]
    monkeypatch.setenv(CREDENTIALS_ENV, json.dumps({"datasets": [_keys(reader)]}))
    uri = f"s3://iam-data/{reader['key']}/missing.jsonl"
    run = train_inproc("--model_id", tiny_model, "--dataset_file", uri, "--output_dir", tmp_path, "--dry_run")
    assert run.code == 2
    assert "s3://iam-data/***/missing.jsonl" in run.stderr
    assert reader["key"] not in run.stdout + run.stderr and reader["secret"] not in run.stdout + run.stderr


# ---- against IAM-enforcing moto --------------------------------------------------------------------------


def _keys(user: dict) -> dict:
    return {"aws_access_key_id": user["key"], "aws_secret_access_key": user["secret"], "aws_region": "us-east-1"}


@pytest.fixture(autouse=True)
def fresh_s3fs():
    """s3fs instances are cached by their arguments, not by the environment: the ambient one must be
    rebuilt against this server (and not leak into other modules' tests)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    credentials.clear_sessions()
    yield
    s3fs.S3FileSystem.clear_instance_cache()
    credentials.clear_sessions()


def _ambient(monkeypatch, server) -> None:
    """The trainer's own identity: `trainer-pod`, which may assume the role but reads no bucket."""
    pod = server["users"]["trainer-pod"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", server["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", pod["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", pod["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv(CREDENTIALS_ENV, raising=False)


def _put(uri: str, text: str, user: dict) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", key=user["key"], secret=user["secret"], skip_instance_cache=True)
    with fs.open(uri, "w") as fh:
        fh.write(text)


CHAT_JSONL = "".join(json.dumps(r) + "\n" for r in chat_rows())


def test_moto_enforces_each_users_bucket(s3_iam_server, monkeypatch):
    """The premise of the tests below: a key reaches its own bucket, and no other."""
    _ambient(monkeypatch, s3_iam_server)
    users = s3_iam_server["users"]
    _put("s3://iam-data/probe.jsonl", '{"text": "x"}\n', users["data-reader"])
    reader = {"key": users["data-reader"]["key"], "secret": users["data-reader"]["secret"]}
    writer = {"key": users["artifact-writer"]["key"], "secret": users["artifact-writer"]["secret"]}
    assert list(storage.read_lines("s3://iam-data/probe.jsonl", reader)) == ['{"text": "x"}']
    with pytest.raises(storage.StorageError):
        list(storage.read_lines("s3://iam-data/probe.jsonl", writer))
    with pytest.raises(storage.StorageError):
        list(storage.read_lines("s3://iam-data/probe.jsonl"))  # the ambient identity: no bucket at all


def test_dataset_and_artifacts_each_with_their_own_keys(s3_iam_server, tiny_model, tmp_path, train_inproc, monkeypatch):
    import fsspec

    _ambient(monkeypatch, s3_iam_server)
    users = s3_iam_server["users"]
    _put("s3://iam-data/u1/chat.jsonl", CHAT_JSONL, users["data-reader"])
    good = {"datasets": [_keys(users["data-reader"])], "artifacts": _keys(users["artifact-writer"])}
    monkeypatch.setenv(CREDENTIALS_ENV, json.dumps(good))
    argv = [
        "--model_id",
        tiny_model,
        "--dataset_file",
        "s3://iam-data/u1/chat.jsonl",
        *FAST,
        "--max_steps",
        "2",
        "--upload_output_to",
        "s3://iam-artifacts/run-1",
        "--log_uri",
        "s3://iam-artifacts/logs/run-1/",
    ]
    run = train_inproc(*argv, "--output_dir", tmp_path / "a")
    assert run.code == 0, run.stderr

    writer = fsspec.filesystem("s3", key=users["artifact-writer"]["key"], secret=users["artifact-writer"]["secret"], skip_instance_cache=True)
    names = {p.split("/", 1)[1] for p in writer.find("iam-artifacts")}
    assert {"run-1/adapter_model.safetensors", "run-1/run_summary.json", "logs/run-1/train.log", "logs/run-1/run_summary.json"} <= names
    assert json.loads(writer.cat("iam-artifacts/logs/run-1/run_summary.json"))["status"] == "succeeded"

    # The same run with the two entries swapped cannot read its data: each key reached only its own bucket.
    swapped = {"datasets": [_keys(users["artifact-writer"])], "artifacts": _keys(users["data-reader"])}
    monkeypatch.setenv(CREDENTIALS_ENV, json.dumps(swapped))
    run = train_inproc(*argv, "--output_dir", tmp_path / "b")
    assert run.code == 2 and "s3://iam-data/u1/chat.jsonl: cannot read" in run.stderr
    for user in users.values():
        assert user["key"] not in run.stdout + run.stderr and user["secret"] not in run.stdout + run.stderr


def test_role_arn_is_assumed_with_the_ambient_identity(s3_iam_server, tiny_model, tmp_path, train_inproc, monkeypatch):
    _ambient(monkeypatch, s3_iam_server)
    users = s3_iam_server["users"]
    role_creds = {"datasets": [{"role_arn": s3_iam_server["role_arn"]}]}

    # Seed the role's bucket through the role itself (no user has access to it).
    options = credentials.storage_options(credentials.parse(json.dumps(role_creds), 1).datasets[0], "seed")
    storage.write_bytes("s3://iam-role-data/p1/chat.jsonl", CHAT_JSONL.encode(), options)

    argv = ["--model_id", tiny_model, "--dataset_file", "s3://iam-role-data/p1/chat.jsonl", "--dry_run"]
    monkeypatch.setenv(CREDENTIALS_ENV, json.dumps(role_creds))
    run = train_inproc(*argv, "--output_dir", tmp_path / "a")
    assert run.code == 0, run.stderr
    assert run.of("dataset")[0]["rows"] == 12

    monkeypatch.delenv(CREDENTIALS_ENV)  # the pod's own identity alone may not read the role's bucket
    run = train_inproc(*argv, "--output_dir", tmp_path / "b")
    assert run.code == 2 and "cannot read" in run.stderr

    # A user that may not assume roles gets a clear start-up failure naming the entry.
    credentials.clear_sessions()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", users["data-reader"]["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", users["data-reader"]["secret"])
    monkeypatch.setenv(CREDENTIALS_ENV, json.dumps(role_creds))
    run = train_inproc(*argv, "--output_dir", tmp_path / "c")
    assert run.code == 2
    assert "datasets[0].role_arn: the trainer's identity could not assume the role (AccessDenied)" in run.stderr


def test_assumed_role_credentials_refresh_before_they_expire(s3_iam_server, monkeypatch):
    """The session s3fs gets holds refreshable credentials: once they are near their expiry, the next
    request assumes the role again (a run that outlasts an hour keeps writing its artifacts)."""
    import asyncio

    _ambient(monkeypatch, s3_iam_server)
    creds = credentials.Creds(role_arn=s3_iam_server["role_arn"])
    calls = []
    real = credentials.assume_role
    monkeypatch.setattr(credentials, "assume_role", lambda *a: calls.append(a) or real(*a))
    session = credentials._role_session(creds, "artifacts")

    async def keys():
        loaded = await session.get_credentials()
        first = (await loaded.get_frozen_credentials()).access_key
        from datetime import datetime, timedelta

        loaded._expiry_time = datetime.now(UTC) + timedelta(seconds=30)  # inside the mandatory window
        return first, (await loaded.get_frozen_credentials()).access_key

    first, second = asyncio.run(keys())
    assert len(calls) == 2 and first != second
    assert progress.redact(f"{first} {second}") == "*** ***"  # STS's temporary keys are redacted too
