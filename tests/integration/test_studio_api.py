"""The studio's job spec over real HTTP (both servers): 202 `{"job": ...}`, its job_id as the idempotency
key (same body: the first job; another body: 409), the `studio_job_id` label filter, studio paths in
400s, and no secret value (hub token, AWS keys, the callback's Authorization) in any response, the
stored job or anything but the launch message."""

from __future__ import annotations

import base64
import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import requests

from tests.fakes.studio_example import AUTH_HEADER, JOB_ID, example
from trainer import flags as trainer_flags

SIGNING = "whsec_" + base64.b64encode(b"studio-test-signing-key-0123456789").decode()
HF_TOKEN = "hf_studio_SECRET_token_42"
AWS_ID, AWS_SECRET, AWS_SESSION = "AKIASTUDIOSECRETID01", "studio/SECRET+access+key+value", "studio-SECRET-session-token"
SECRETS = (HF_TOKEN, AUTH_HEADER, AUTH_HEADER.removeprefix("Bearer "), AWS_ID, AWS_SECRET, AWS_SESSION)
HOOK = f"http://127.0.0.1:9/api/training/webhooks/{JOB_ID}"  # an IP literal: accepted without DNS (allowed host)
ENV = {"WEBHOOK_SIGNING_SECRET": SIGNING, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}


def studio_body(job_id: str = JOB_ID) -> dict[str, Any]:
    """The reference page's example (per-source credentials added), pointed at an allowed callback host."""
    body = example()
    body["job_id"] = job_id
    body["base_model"]["auth_token"] = HF_TOKEN
    body["datasets"][0]["auth"] = {
        "aws_access_key_id": AWS_ID,
        "aws_secret_access_key": AWS_SECRET,
        "aws_session_token": AWS_SESSION,
        "aws_region": "us-east-1",
    }
    body["artifacts"].update(
        log_uri=f"s3://studio-data/users/u1/projects/p1/logs/{job_id}/",
        status_stream_url=HOOK,
        auth={"role_arn": "arn:aws:iam::123456789012:role/studio-artifacts"},
    )
    body["callbacks"] = {"webhook_url": HOOK, "auth_header": AUTH_HEADER}
    return body


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, secret


def stored_bytes(tmp_path: Path) -> str:
    """Every row of every table of the api's SQLite store, as text."""
    out = []
    for path in tmp_path.glob("*.db"):
        db = sqlite3.connect(path)
        try:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                out += [repr(row) for row in db.execute(f'SELECT * FROM "{table}"')]
        finally:
            db.close()
    assert out
    return "\n".join(out)


def test_the_studio_body_is_accepted_once_per_job_id(api, tmp_path: Path) -> None:
    url, bus, _ = api(**ENV)
    r = requests.post(f"{url}/train", json=studio_body())
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["status"] == "queued" and job["backend"] == "kubernetes" and job["labels"] == {"studio_job_id": JOB_ID}
    assert "--per_device_train_batch_size=8" in job["args"] and "--gradient_accumulation_steps=2" in job["args"]
    assert f"--output_dir=/tmp/studio/{JOB_ID}" in job["args"] and "--upload_output_to=s3://studio-models/lora-refinement-1796113031796" in job["args"]
    assert set(job["env"]) == {"HF_TOKEN", trainer_flags.CREDENTIALS_ENV}
    # The callback is shown by its URL only: never its Authorization, sealed or not.
    assert job["callback"] == {"kind": "studio", "url": studio_body()["callbacks"]["webhook_url"].split("?")[0]}
    # The secrets travel only inside the launch message.
    assert len(bus.messages) == 1
    _, data, _, _ = bus.messages[0]
    assert data["env"]["HF_TOKEN"] == HF_TOKEN
    creds = json.loads(data["env"][trainer_flags.CREDENTIALS_ENV])
    assert creds["datasets"][0]["aws_secret_access_key"] == AWS_SECRET and creds["artifacts"] == {"role_arn": "arn:aws:iam::123456789012:role/studio-artifacts"}
    assert AUTH_HEADER not in json.dumps(data)  # the callback's Authorization is kept sealed, with the job

    # The studio sends no Idempotency-Key: its job_id is the key. Same body -> the first job, no new launch.
    again = requests.post(f"{url}/train", json=studio_body())
    assert again.status_code == 202 and again.json()["job"]["id"] == job["id"]
    assert again.headers.get("Idempotent-Replayed") == "true" and len(bus.messages) == 1
    # Same job_id, another body (even only a secret changed) -> 409.
    changed = studio_body()
    changed["tuning_parameters"]["learning_rate"] = 0.001
    assert requests.post(f"{url}/train", json=changed).status_code == 409
    other_token = studio_body()
    other_token["callbacks"]["auth_header"] = "Bearer another-token"
    assert requests.post(f"{url}/train", json=other_token).status_code == 409
    # A header naming another key is a 400 on job_id.
    r = requests.post(f"{url}/train", json=studio_body(), headers={"Idempotency-Key": "something-else"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "job_id"

    # Another run is another job; the label finds each.
    second = requests.post(f"{url}/train", json=studio_body("0b3c1f5e-2a9d-4d7e-9a51-3f1d2c4b5a60"))
    assert second.status_code == 202
    listed = requests.get(f"{url}/jobs", params={"label": f"studio_job_id={JOB_ID}"}).json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    detail = requests.get(f"{url}/jobs/{job['id']}")
    assert detail.status_code == 200 and detail.json()["job"]["labels"]["studio_job_id"] == JOB_ID
    everything = requests.get(f"{url}/jobs").json()
    assert len(everything["jobs"]) == 2
    assert_no_secret(r.text, again.text, json.dumps(job), json.dumps(listed), detail.text, json.dumps(everything), stored_bytes(tmp_path))


def test_studio_refusals_name_its_paths_without_secrets(api) -> None:
    url, bus, _ = api(**ENV)
    bad = studio_body()
    bad["customization"]["method"] = "new-transformer"
    bad["datasets"].append({"source": "s3://studio-data/b.csv", "format": "csv"})
    bad["datasets"][0]["auth"]["aws_region"] = "nowhere"
    bad["tuning_parameters"]["batch_size"] = 62
    bad["tuning_parameters"]["output_dir"] = "/x"
    bad["callbacks"]["auth_header"] = AUTH_HEADER + "\n"
    r = requests.post(f"{url}/train", json=bad)
    assert r.status_code == 400
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {
        "customization.method",
        "datasets[0].auth.aws_region",
        "tuning_parameters.batch_size",
        "tuning_parameters.output_dir",
        "callbacks.auth_header",
    }
    assert bus.messages == []
    assert_no_secret(r.text)


def test_without_a_signing_secret_callbacks_are_refused(api) -> None:
    url, _, _ = api(WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    r = requests.post(f"{url}/train", json=studio_body())
    assert r.status_code == 400
    assert r.json()["errors"] == [{"field": "callbacks", "message": r.json()["errors"][0]["message"]}]
    assert "WEBHOOK_SIGNING_SECRET" in r.json()["errors"][0]["message"]
    # Without callbacks the run is accepted.
    body = copy.deepcopy(studio_body())
    del body["callbacks"], body["artifacts"]["status_stream_url"]
    assert requests.post(f"{url}/train", json=body).status_code == 202
