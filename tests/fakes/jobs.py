"""Jobs for backend tests: the old README's two `POST /train` examples, normalised and built exactly as
the api does (`normalise_request` + `build_job`), so the backends are tested on real jobs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.job import Job
from shared.domain.request import NormalisedRequest, RequestPolicy, normalise_request
from shared.domain.status import JobStatus
from shared.usecases.service import build_job
from tests.fakes.policy import make_policy

# reference/old-training-api-README.md, "Kubernetes (default)" and "Vertex AI fallback", verbatim.
README_KUBERNETES: dict[str, Any] = {
    "backend": "kubernetes",
    "job_name": "aml-qlora-k8s",
    "model": "meta-llama/Llama-3.2-3B-Instruct",
    "dataset_file": "s3://my-bucket/jobs/job-123/data.jsonl",
    "output_dir": "/tmp/model",
    "upload_output_to": "gs://finery-training/models/job-123",
    "trainer_args": {"num_train_epochs": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8},
    "env": {"HF_TOKEN": "hf_xxx"},
}
README_VERTEX: dict[str, Any] = {
    "backend": "vertex",
    "job_name": "aml-qlora-vertex",
    "model_id": "nemotron-3-8b",
    "dataset_file": "gs://finery-training/jobs/job-456/data.jsonl",
    "output_dir": "/tmp/model",
    "upload_output_to": "gs://finery-training/models/job-456",
    "trainer_args": {"num_train_epochs": 3, "per_device_train_batch_size": 4},
}

JOB_ID = "5f0c7c2e-8d1a-4b7e-9c3a-2b1d4e6f8a90"
NOW = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)


def normalised(body: dict[str, Any], policy: RequestPolicy | None = None) -> NormalisedRequest:
    return normalise_request(copy.deepcopy(body), policy or make_policy())


def job_from(body: dict[str, Any], job_id: str = JOB_ID, policy: RequestPolicy | None = None) -> tuple[Job, dict[str, str]]:
    """(the queued job, its secret env) as the api would store and publish them."""
    req = normalised(body, policy)
    return build_job(req, job_id=job_id, now=NOW, idempotency_key=None), dict(req.env)


# A job as the store tests build it: numbered, with a distinct creation time each.
T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def make_job(i: int, **kw) -> Job:
    base = dict(
        id=f"job-{i:05d}",
        name=kw.pop("name", f"name-{i % 3}"),
        backend=kw.pop("backend", KUBERNETES),
        status=kw.pop("status", JobStatus.QUEUED),
        created_at=T0 + timedelta(seconds=i),
        updated_at=T0 + timedelta(seconds=i),
        dataset_file="gs://b/d.jsonl",
        output_dir="/tmp/o",
        args=("--dataset_file=gs://b/d.jsonl", "--output_dir=/tmp/o"),
        env_names=("HF_TOKEN",),
        labels={"team": "a"},
        request_hash=f"h{i}",
    )
    base.update(kw)
    return Job(**base)
