"""Rendered manifests: the Kubernetes Job (+ Secret) and the Vertex CustomJob for the old README's two
examples, and the effect of every K8S_* / VERTEX_* variable, one row each. Pure: no server."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.kubernetes.manifests import render_job, render_manifest, render_secret, validate_manifest
from shared.adapters.vertex_render import render_custom_job, to_proto
from shared.adapters.vertex_settings import VertexSettings
from shared.domain.job import REDACTED
from shared.errors import PermanentError
from shared.settings import Settings
from tests.fakes.jobs import JOB_ID, README_KUBERNETES, README_VERTEX, job_from

README_ARGS_K8S = [
    "--model_id=meta-llama/Llama-3.2-3B-Instruct",
    "--dataset_file=s3://my-bucket/jobs/job-123/data.jsonl",
    "--output_dir=/tmp/model",
    "--upload_output_to=gs://finery-training/models/job-123",
    "--per_device_train_batch_size=2",
    "--gradient_accumulation_steps=8",
    "--num_train_epochs=2",
]
LABELS = {
    "app.kubernetes.io/managed-by": "training-platform",
    "app.kubernetes.io/component": "trainer",
    "training-platform/job-id": JOB_ID,
}
ANNOTATIONS = {"training-platform/job-id": JOB_ID, "training-platform/job-name": "aml-qlora-k8s"}


def k8s_config(**env: str) -> KubernetesSettings:
    return KubernetesSettings.of(Settings(K8S_TRAINING_IMAGE="ghcr.io/acme/trainer:1.0", **env))


def vertex_config(**env: str) -> VertexSettings:
    base = {"VERTEX_PROJECT": "acme-ml", "VERTEX_IMAGE_URI": "us-docker.pkg.dev/acme/trainer:1.0"}
    return VertexSettings.of(Settings(**{**base, **env}))


def dig(obj, path: str):
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


# ---- Kubernetes ------------------------------------------------------------------------------------


def test_readme_kubernetes_example_renders_the_whole_manifest():
    job, env = job_from(README_KUBERNETES)
    manifest = render_manifest(job, sorted(env), k8s_config())
    assert manifest["kind"] == "List" and [i["kind"] for i in manifest["items"]] == ["Secret", "Job"]
    secret, k8s_job = manifest["items"]
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "aml-qlora-k8s-4e6f8a90-env", "namespace": "default", "labels": LABELS, "annotations": ANNOTATIONS},
        "stringData": {"HF_TOKEN": REDACTED},
    }
    assert k8s_job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "aml-qlora-k8s-4e6f8a90", "namespace": "default", "labels": LABELS, "annotations": ANNOTATIONS},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": LABELS, "annotations": ANNOTATIONS},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "ghcr.io/acme/trainer:1.0",
                            "command": ["python", "-m", "trainer.launch"],
                            "args": ["--nproc_per_node=1", "--", *README_ARGS_K8S],
                            "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "aml-qlora-k8s-4e6f8a90-env", "key": "HF_TOKEN"}}}],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }
    assert "hf_xxx" not in json.dumps(manifest)
    validate_manifest(manifest, "1.30")
    for item in manifest["items"]:
        kubernetes_validate.validate(item, kubernetes_validate.utils.latest_version(), strict=True)


def test_the_readme_vertex_example_on_kubernetes_has_no_secret():
    job, env = job_from({**README_VERTEX, "backend": "kubernetes"})
    manifest = render_manifest(job, sorted(env), k8s_config())
    assert [i["kind"] for i in manifest["items"]] == ["Job"]
    container = manifest["items"][0]["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in container
    assert container["args"] == [
        "--nproc_per_node=1",
        "--",
        "--model_id=nemotron-3-8b",
        "--dataset_file=gs://finery-training/jobs/job-456/data.jsonl",
        "--output_dir=/tmp/model",
        "--upload_output_to=gs://finery-training/models/job-456",
        "--per_device_train_batch_size=4",
        "--num_train_epochs=3",
    ]
    validate_manifest(manifest)


POD = "spec.template.spec"
K8S_ROWS = [
    # (variable(s), value(s), path in the Job, expected; None = absent)
    ("K8S_TRAINING_IMAGE", "registry.local/t:2", f"{POD}.containers.0.image", "registry.local/t:2"),
    ("K8S_NAMESPACE", "ml-jobs", "metadata.namespace", "ml-jobs"),
    ("K8S_SERVICE_ACCOUNT", "trainer-sa", f"{POD}.serviceAccountName", "trainer-sa"),
    ("K8S_SERVICE_ACCOUNT", "", f"{POD}.serviceAccountName", None),
    (
        "K8S_NODE_SELECTOR",
        '{"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}',
        f"{POD}.nodeSelector",
        {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
    ),
    ("K8S_NODE_SELECTOR", "", f"{POD}.nodeSelector", None),
    (
        "K8S_TOLERATIONS",
        '[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]',
        f"{POD}.tolerations",
        [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    ),
    ("K8S_TOLERATIONS", "[]", f"{POD}.tolerations", None),
    ("K8S_IMAGE_PULL_SECRETS", '["regcred", {"name": "other"}]', f"{POD}.imagePullSecrets", [{"name": "regcred"}, {"name": "other"}]),
    ("K8S_IMAGE_PULL_SECRETS", "", f"{POD}.imagePullSecrets", None),
    ("K8S_BACKOFF_LIMIT", "3", "spec.backoffLimit", 3),
    ("K8S_BACKOFF_LIMIT", "", "spec.backoffLimit", 0),
    ("K8S_TTL_SECONDS_AFTER_FINISHED", "3600", "spec.ttlSecondsAfterFinished", 3600),
    ("K8S_TTL_SECONDS_AFTER_FINISHED", "", "spec.ttlSecondsAfterFinished", None),
    (
        "K8S_RESOURCE_LIMITS",
        '{"nvidia.com/gpu": 2, "memory": "64Gi", "cpu": 8}',
        f"{POD}.containers.0.resources",
        {"limits": {"nvidia.com/gpu": "2", "memory": "64Gi", "cpu": "8"}, "requests": {"nvidia.com/gpu": "2", "memory": "64Gi", "cpu": "8"}},
    ),
    ("K8S_RESOURCE_LIMITS", "{}", f"{POD}.containers.0.resources", None),
    ("K8S_APPLY", "1", None, None),  # changes what is sent, not what is rendered
    ("K8S_KUBECONFIG", "/kube/config", None, None),
    ("KUBECONFIG", "/kube/config", None, None),
    ("K8S_CONTEXT", "gke_acme_us-central1_gpu", None, None),
]


def _absent_or(obj, path):
    try:
        return dig(obj, path)
    except (KeyError, IndexError):
        return None


@pytest.mark.parametrize("variable, value, path, expected", K8S_ROWS, ids=[f"{r[0]}={r[1][:20]}" for r in K8S_ROWS])
def test_each_k8s_variable(variable, value, path, expected):
    job, env = job_from(README_KUBERNETES)
    settings = Settings(**{"K8S_TRAINING_IMAGE": "ghcr.io/acme/trainer:1.0", variable: value})
    assert not settings.config_errors
    cfg = KubernetesSettings.of(settings)
    manifest = render_manifest(job, sorted(env), cfg)
    validate_manifest(manifest)
    k8s_job = manifest["items"][-1]
    if path is None:
        baseline = render_manifest(job, sorted(env), k8s_config())
        assert manifest == baseline
        field = {"K8S_APPLY": "apply", "K8S_KUBECONFIG": "kubeconfig", "KUBECONFIG": "kubeconfig", "K8S_CONTEXT": "context"}[variable]
        assert getattr(cfg, field) == (True if value == "1" else value)
    else:
        assert _absent_or(k8s_job, path) == expected
    if variable == "K8S_NAMESPACE":
        assert manifest["items"][0]["metadata"]["namespace"] == value  # the Secret lives beside its Job


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("K8S_IMAGE_PULL_SECRETS", '[{"nope": 1}]', "K8S_IMAGE_PULL_SECRETS[0]"),
        ("K8S_NODE_SELECTOR", '{"gpu": true}', "K8S_NODE_SELECTOR values must be strings"),
        ("K8S_RESOURCE_LIMITS", '{"nvidia.com/gpu": true}', "K8S_RESOURCE_LIMITS"),
        ("K8S_TOLERATIONS", '["gpu"]', "K8S_TOLERATIONS"),
    ],
)
def test_bad_config_shapes_are_permanent_errors(variable, value, message):
    job, env = job_from(README_KUBERNETES)
    cfg = k8s_config(**{variable: value})
    with pytest.raises(PermanentError) as info:
        render_manifest(job, sorted(env), cfg)
    assert message in str(info.value) and info.value.reason == "InvalidConfig" and info.value.failure_class == "infra"


def test_a_spec_the_schema_rejects_is_a_permanent_invalid_spec():
    job, env = job_from(README_KUBERNETES)
    cfg = k8s_config(K8S_TOLERATIONS='[{"key": "gpu", "operatr": "Exists"}]')  # typo: unknown field
    manifest = render_manifest(job, sorted(env), cfg)
    with pytest.raises(PermanentError) as info:
        validate_manifest(manifest)
    assert info.value.reason == "InvalidSpec" and "tolerations" in str(info.value) and "operatr" in str(info.value)


def test_missing_image_is_a_config_error():
    job, env = job_from(README_KUBERNETES)
    with pytest.raises(PermanentError, match="K8S_TRAINING_IMAGE"):
        render_job(job, sorted(env), KubernetesSettings(image=None))


def test_secret_holds_values_only_when_asked():
    job, env = job_from({**README_KUBERNETES, "env": {"HF_TOKEN": "hf_secret_value", "WANDB_API_KEY": "wandb-secret"}})
    secret = render_secret(job, env, k8s_config())
    assert secret["stringData"] == {"HF_TOKEN": "hf_secret_value", "WANDB_API_KEY": "wandb-secret"}
    stored = json.dumps(render_manifest(job, sorted(env), k8s_config()))
    assert "hf_secret_value" not in stored and "wandb-secret" not in stored
    container = render_job(job, sorted(env), k8s_config())["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["HF_TOKEN", "WANDB_API_KEY"]
    assert all(e["valueFrom"]["secretKeyRef"]["name"] == "aml-qlora-k8s-4e6f8a90-env" for e in container["env"])


# ---- Vertex ----------------------------------------------------------------------------------------


def test_readme_vertex_example_renders_the_whole_custom_job():
    job, env = job_from(README_VERTEX)
    spec = render_custom_job(job, sorted(env), vertex_config())
    assert spec == {
        "displayName": "aml-qlora-vertex-4e6f8a90",
        "labels": {"job_id": JOB_ID, "managed-by": "training-platform"},
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "machineSpec": {"machineType": "a2-highgpu-1g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 1},
                    "replicaCount": 1,
                    "containerSpec": {
                        "imageUri": "us-docker.pkg.dev/acme/trainer:1.0",
                        "command": ["python", "-m", "trainer.launch"],
                        "args": [
                            "--nproc_per_node=1",
                            "--",
                            "--model_id=nemotron-3-8b",
                            "--dataset_file=gs://finery-training/jobs/job-456/data.jsonl",
                            "--output_dir=/tmp/model",
                            "--upload_output_to=gs://finery-training/models/job-456",
                            "--per_device_train_batch_size=4",
                            "--num_train_epochs=3",
                        ],
                    },
                }
            ]
        },
    }
    proto = to_proto(spec)  # the client's own parser accepts it
    assert proto.job_spec.worker_pool_specs[0].machine_spec.accelerator_type.name == "NVIDIA_TESLA_A100"
    assert vertex_config().parent == "projects/acme-ml/locations/us-central1"


VERTEX_ROWS = [
    ("VERTEX_PROJECT", "other-proj", "parent", "projects/other-proj/locations/us-central1"),
    ("PROJECT_ID", "pid-proj", "parent", "projects/pid-proj/locations/us-central1"),
    ("VERTEX_REGION", "europe-west4", "parent", "projects/acme-ml/locations/europe-west4"),
    ("VERTEX_IMAGE_URI", "eu.gcr.io/x/t:9", "jobSpec.workerPoolSpecs.0.containerSpec.imageUri", "eu.gcr.io/x/t:9"),
    ("VERTEX_MACHINE_TYPE", "a3-highgpu-8g", "jobSpec.workerPoolSpecs.0.machineSpec.machineType", "a3-highgpu-8g"),
    ("VERTEX_ACCELERATOR_TYPE", "NVIDIA_H100_80GB", "jobSpec.workerPoolSpecs.0.machineSpec.acceleratorType", "NVIDIA_H100_80GB"),
    ("VERTEX_ACCELERATOR_COUNT", "8", "jobSpec.workerPoolSpecs.0.machineSpec.acceleratorCount", 8),
    ("VERTEX_ACCELERATOR_COUNT", "0", "jobSpec.workerPoolSpecs.0.machineSpec", {"machineType": "a2-highgpu-1g"}),
    ("VERTEX_REPLICA_COUNT", "1", "jobSpec.workerPoolSpecs.1", None),
    ("VERTEX_REPLICA_COUNT", "3", "jobSpec.workerPoolSpecs.1.replicaCount", 2),
    ("VERTEX_SERVICE_ACCOUNT", "trainer@acme-ml.iam.gserviceaccount.com", "jobSpec.serviceAccount", "trainer@acme-ml.iam.gserviceaccount.com"),
    ("VERTEX_SERVICE_ACCOUNT", "", "jobSpec.serviceAccount", None),
    ("VERTEX_NETWORK", "projects/123/global/networks/vpc", "jobSpec.network", "projects/123/global/networks/vpc"),
    ("VERTEX_NETWORK", "", "jobSpec.network", None),
    ("VERTEX_SUBMIT", "1", "submit", True),
    (
        "VERTEX_HF_TOKEN_SECRET",
        "projects/acme-ml/secrets/hf/versions/3",
        "jobSpec.workerPoolSpecs.0.containerSpec.env",
        [{"name": "HF_TOKEN_SECRET", "value": "projects/acme-ml/secrets/hf/versions/3"}],
    ),
]


@pytest.mark.parametrize("variable, value, path, expected", VERTEX_ROWS, ids=[f"{r[0]}={r[1][:20]}" for r in VERTEX_ROWS])
def test_each_vertex_variable(variable, value, path, expected):
    body = README_VERTEX if variable != "VERTEX_HF_TOKEN_SECRET" else {**README_VERTEX, "hf_token": "hf_never_in_spec"}
    job, env = job_from(body)
    base = {"VERTEX_IMAGE_URI": "us-docker.pkg.dev/acme/trainer:1.0"}
    if variable != "PROJECT_ID":
        base["VERTEX_PROJECT"] = "acme-ml"
    if variable == "VERTEX_HF_TOKEN_SECRET":
        base["VERTEX_JOB_SECRETS"] = "0"  # the per-name reference is what is passed with per-job secrets off
    cfg = VertexSettings.of(Settings(**{**base, variable: value}))
    spec = render_custom_job(job, sorted(env), cfg)
    to_proto(spec)
    if path in ("parent", "submit"):
        assert getattr(cfg, path) == expected
    else:
        assert _absent_or(spec, path) == expected
    assert "hf_never_in_spec" not in json.dumps(spec)


def test_vertex_refuses_a_secret_it_cannot_pass_by_reference():
    job, env = job_from(README_KUBERNETES | {"backend": "vertex", "dataset_file": "gs://b/d.jsonl"})
    with pytest.raises(PermanentError) as info:
        render_custom_job(job, sorted(env), vertex_config(VERTEX_SUBMIT="1", VERTEX_JOB_SECRETS="0"))
    assert info.value.reason == "SecretNotSupported" and info.value.failure_class == "user"
    assert "VERTEX_HF_TOKEN_SECRET" in str(info.value) and "hf_xxx" not in str(info.value)


def test_vertex_bad_accelerator_name_is_invalid_spec():
    job, env = job_from(README_VERTEX)
    spec = render_custom_job(job, sorted(env), vertex_config(VERTEX_ACCELERATOR_TYPE="NVIDIA_BOGUS"))
    with pytest.raises(PermanentError) as info:
        to_proto(spec)
    assert info.value.reason == "InvalidSpec"


@pytest.mark.parametrize("missing, message", [("VERTEX_PROJECT", "VERTEX_PROJECT"), ("VERTEX_IMAGE_URI", "VERTEX_IMAGE_URI")])
def test_vertex_missing_required_settings(missing, message):
    job, env = job_from(README_VERTEX)
    cfg = vertex_config(**{missing: ""})
    with pytest.raises(PermanentError, match=message):
        render_custom_job(job, sorted(env), cfg)
