"""Issue 17's "done when": the studio's own request, end to end, on the embedded server (`make run`'s
`python -m functions.dev.embedded`, local backend, SQLite).

The reference page's example body (../shared/reference/studio-contract.md), pointed at the README's tiny
local model and at a dataset on the S3 test server, goes to `POST /train` exactly as the studio sends it
(its cluster token, no Idempotency-Key). On this CPU-only machine two fields are changed: `method` lora
and `precision` fp32 (QLoRA needs bitsandbytes on a GPU, bf16 a CPU with AVX512-BF16), and 2 GPUs
instead of 4 (each "GPU" is a CPU trainer process over gloo here; 2 cores). Everything else is as the
studio sends it, including per-source credentials: the S3 server enforces IAM, the dataset bucket is
readable only with `datasets[0].auth`, the artifact bucket writable only with `artifacts.auth`, and the
trainer's own identity reaches neither.

The studio's callback route is a fake that applies its acceptance rules (tests/fakes/studio_receiver.py):
it sees queued -> running (with progress in `log`) -> succeeded, every callback answered 200. The adapter
lands at `output_uri`, the log and run summary at `log_uri`; the same `job_id` twice makes one job; no
credential value is in the store, the server's log, the run folder, any response or any manifest.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from functions.dev.local_stack import free_port, stop_group, wait_http
from tests.fakes.s3 import iam_world, moto_server
from tests.fakes.studio_example import EXAMPLE, JOB_TOKEN, example
from tests.fakes.studio_receiver import StudioReceiver
from tests.fakes.tiny_job import CHAT

pytestmark = [pytest.mark.slow, pytest.mark.trainer]

REPO = Path(__file__).resolve().parents[2]
CLUSTER_TOKEN = "studio-cluster-token-0123456789"


@pytest.fixture(scope="module")
def iam():
    with moto_server() as endpoint:
        yield iam_world(endpoint)


def studio_body(iam: dict, tiny: Path, callback_url: str) -> dict:
    """The example pointed at the tiny model, the IAM-guarded buckets and the fake studio."""
    body = example()
    job_id = body["job_id"]
    data, artifacts = iam["buckets"]["data-reader"], iam["buckets"]["artifact-writer"]
    reader, writer = iam["users"]["data-reader"], iam["users"]["artifact-writer"]
    body["base_model"]["model_name"] = str(tiny)
    body["customization"].update(method="lora", precision="fp32")
    del body["customization"]["qlora"]
    body["resources"]["gpus"] = 2
    body["datasets"] = [
        {
            "source": f"s3://{data}/users/u1/projects/p1/ingestion/chat.jsonl",
            "format": "jsonl",
            "auth": {"aws_access_key_id": reader["key"], "aws_secret_access_key": reader["secret"], "aws_region": "us-east-1"},
        }
    ]
    body["artifacts"] = {
        "log_uri": f"s3://{artifacts}/logs/{job_id}/",
        "status_stream_url": callback_url,
        "output_uri": f"s3://{artifacts}/lora-refinement-1796113031796",
        "auth": {"aws_access_key_id": writer["key"], "aws_secret_access_key": writer["secret"], "aws_region": "us-east-1"},
    }
    # A learning rate the tiny model learns at, and a PROGRESS line every step (a trainer flag by name).
    body["tuning_parameters"].update(learning_rate=0.01, logging_steps=1)
    body["callbacks"]["webhook_url"] = callback_url
    return body


def s3(iam: dict, user: str):
    import boto3

    u = iam["users"][user]
    return boto3.client("s3", endpoint_url=iam["endpoint"], region_name="us-east-1", aws_access_key_id=u["key"], aws_secret_access_key=u["secret"])


def wait_until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


def test_the_studios_example_runs_to_succeeded_and_every_callback_is_accepted(tmp_path: Path, tiny: Path, iam: dict) -> None:
    job_id = EXAMPLE["job_id"]
    studio = StudioReceiver(cluster_token=CLUSTER_TOKEN)
    studio.start()
    callback_url = studio.add_job(job_id, JOB_TOKEN)
    body = studio_body(iam, tiny, callback_url)
    data_bucket = iam["buckets"]["data-reader"]
    s3(iam, "data-reader").put_object(
        Bucket=data_bucket, Key="users/u1/projects/p1/ingestion/chat.jsonl", Body="".join(json.dumps(r) + "\n" for r in CHAT).encode()
    )

    pod = iam["users"]["trainer-pod"]  # the trainer's own identity: reaches no bucket
    env = {
        **os.environ,
        "PORT": str(free_port()),
        "SQLITE_PATH": str(tmp_path / "jobs.db"),
        "DEFAULT_TRAINING_BACKEND": "local",
        "LOCAL_ALLOWED_ROOTS": f"{tmp_path}:/tmp",
        "RECONCILE_INTERVAL_SECONDS": "0",
        "API_TOKENS": CLUSTER_TOKEN,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_SIGNING_SECRET": "whsec_" + base64.b64encode(os.urandom(24)).decode(),
        "AWS_ENDPOINT_URL": iam["endpoint"],
        "AWS_ACCESS_KEY_ID": pod["key"],
        "AWS_SECRET_ACCESS_KEY": pod["secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
    server_log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "functions.dev.embedded"], cwd=REPO, env=env, start_new_session=True, stdout=open(server_log, "ab"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{env['PORT']}"
    auth = {"Authorization": f"Bearer {CLUSTER_TOKEN}"}
    answers: list[str] = []  # every response body this test got from the platform
    try:
        wait_http(f"{url}/health", 60, proc=server)
        first = requests.post(f"{url}/train", json=body, headers=auth)
        answers.append(first.text)
        assert first.status_code == 202, first.text
        job = first.json()["job"]
        assert job["status"] == "queued" and job["labels"]["studio_job_id"] == job_id

        # The studio never retries, but the same job_id again is one job, not two.
        again = requests.post(f"{url}/train", json=body, headers=auth)
        answers.append(again.text)
        assert again.status_code in (200, 202) and again.json()["job"]["id"] == job["id"]
        listed = requests.get(f"{url}/jobs", params={"label": f"studio_job_id={job_id}"}, headers=auth)
        answers.append(listed.text)
        assert [j["id"] for j in listed.json()["jobs"]] == [job["id"]]

        final = wait_until(
            lambda: [b for b in studio.accepted(job_id) if b["status"] in ("succeeded", "failed", "cancelled")], 300, "the studio's final callback"
        )
        done = requests.get(f"{url}/jobs/{job['id']}", headers=auth)
        answers.append(done.text)
        assert final[0]["status"] == "succeeded", (done.json()["job"]["statusReason"], done.json()["job"]["logTail"][-3000:])

        # What the studio got: every callback accepted, statuses in order, progress while running.
        answered = studio.answers(job_id)
        assert answered and all(status == 200 for status, _ in answered), answered
        got = [b["status"] for _, b in answered]
        assert got[0] == "queued" and got[-1] == "succeeded" and "running" in got, got
        assert [s for i, s in enumerate(got) if i == 0 or s != got[i - 1]] == ["queued", "running", "succeeded"], got
        progress = [b["log"] for _, b in answered if b["status"] == "running" and (b.get("log") or "").startswith("step ")]
        assert progress and "loss" in progress[0], [b for _, b in answered]
        assert body["artifacts"]["output_uri"] in (final[0].get("log") or ""), final
        assert studio.jobs[job_id].status == "succeeded"
        deliveries = requests.get(f"{url}/jobs/{job['id']}/deliveries", headers=auth)
        answers.append(deliveries.text)
        assert {a["verdict"] for a in deliveries.json()["deliveries"]} == {"delivered"}

        # The adapter at output_uri, the log and summary at log_uri — written with the artifact credentials.
        artifacts = s3(iam, "artifact-writer")
        bucket = iam["buckets"]["artifact-writer"]
        keys = {o["Key"] for o in artifacts.list_objects_v2(Bucket=bucket)["Contents"]}
        assert "lora-refinement-1796113031796/adapter_config.json" in keys, sorted(keys)
        assert f"logs/{job_id}/train.log" in keys and f"logs/{job_id}/run_summary.json" in keys, sorted(keys)
        summary = json.loads(artifacts.get_object(Bucket=bucket, Key=f"logs/{job_id}/run_summary.json")["Body"].read())
        train_log = artifacts.get_object(Bucket=bucket, Key=f"logs/{job_id}/train.log")["Body"].read().decode()
        assert summary.get("status", "succeeded") == "succeeded" and "PROGRESS" in train_log
        adapter = json.loads(artifacts.get_object(Bucket=bucket, Key="lora-refinement-1796113031796/adapter_config.json")["Body"].read())
        assert adapter["r"] == 32 and sorted(adapter["target_modules"]) == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]

        for path in ("manifest", "events", "logs", "metrics"):
            r = requests.get(f"{url}/jobs/{job['id']}/{path}", headers=auth)
            assert r.status_code == 200, (path, r.text)
            answers.append(r.text)
    finally:
        stop_group(server)
        studio.stop()

    # No credential value anywhere but where it belongs (the trainer's environment, the studio's request).
    secrets = {
        "hub token": EXAMPLE["base_model"]["auth_token"],
        "per-job callback token": JOB_TOKEN,
        **{f"{user} {part}": iam["users"][user][part] for user in ("data-reader", "artifact-writer") for part in ("key", "secret")},
    }
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("jobs.db*"))
    run_files = [p for p in tmp_path.rglob("*") if p.is_file() and "-runs" in str(p)]
    assert run_files, "the local run folder"
    places = {
        "store": stored.decode("latin-1"),
        "server log": server_log.read_text(errors="replace"),
        "responses": "\n".join(answers),
        "uploaded train.log": train_log,
        "run folder": "\n".join(p.read_text(errors="replace") for p in run_files),
    }
    for where, text in places.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} found in the {where}"
