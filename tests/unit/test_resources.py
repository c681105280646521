"""Per-job `resources` (issue 15, items 1-4 and 7): the request's key checked in the pure domain, each
backend's placement rules, the Kubernetes manifests for every combination against the strict schema, and
the Vertex machine table. Pure: no server."""

from __future__ import annotations

import itertools
import json

import kubernetes_validate
import pytest

from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.kubernetes.manifests import (
    COMPLETION_INDEX_ANNOTATION,
    KUEUE_QUEUE_LABEL,
    job_name,
    render_manifest,
    validate_manifest,
)
from shared.adapters.records import from_record, to_record
from shared.adapters.vertex_render import render_custom_job, to_proto
from shared.adapters.vertex_settings import VertexSettings
from shared.domain import resources as res
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.vertex import VERTEX, VertexRules
from shared.domain.k8s_observe import job_state
from shared.domain.manifest import manifest_view
from shared.domain.request import normalise_request
from shared.domain.resources import Resources, parse_resources
from shared.errors import FieldError, PermanentError, ValidationFailed
from shared.settings import Settings
from tests.fakes.jobs import README_KUBERNETES, README_VERTEX, job_from

BASE = {"K8S_TRAINING_IMAGE": "ghcr.io/acme/trainer:1.0", "VERTEX_PROJECT": "acme-ml", "VERTEX_IMAGE_URI": "us-docker.pkg.dev/acme/trainer:1.0"}
REQUEST = {"dataset_file": "gs://b/data.jsonl", "output_dir": "/tmp/model"}


def settings(**env: str) -> Settings:
    return Settings(**{**BASE, **env})


def errors_of(body: dict, **env: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as info:
        normalise_request(body, settings(**env).request_policy())
    return [(e.field, e.message) for e in info.value.errors]


def k8s_job(resources: dict, *, body: dict | None = None, **env: str):
    s = settings(**env)
    job, secret = job_from({**(body or README_KUBERNETES), "resources": resources}, policy=s.request_policy())
    return job, secret, KubernetesSettings.of(s)


def containers(manifest: dict) -> tuple[dict, dict, dict]:
    job = next(i for i in manifest["items"] if i["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    return job, pod, pod["containers"][0]


# ---- the request's key -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, field, words",
    [
        ({"gpus": 17}, "resources.gpus", "between 0 and 16"),
        ({"gpus": -1}, "resources.gpus", "between 0 and 16"),
        ({"gpus": "4"}, "resources.gpus", "integer, got string"),
        ({"gpus": True}, "resources.gpus", "integer, got boolean"),
        ({"gpus": 2.5}, "resources.gpus", "integer, got number"),
        ({"nodes": 0}, "resources.nodes", "between 1 and 64"),
        ({"nodes": 65}, "resources.nodes", "between 1 and 64"),
        ({"gpu_type": "TPU-v5"}, "resources.gpu_type", "must be one of L4, A100, A100-80GB, H100, H200, B200"),
        ({"gpu_type": 100}, "resources.gpu_type", "string, got number"),
        ({"cpus": 0}, "resources.cpus", "greater than 0"),
        ({"memory_gb": "16Gi"}, "resources.memory_gb", "number, got string"),
        ({"max_duration_minutes": 0}, "resources.max_duration_minutes", "between 1 and"),
        ({"gpu": 4}, "resources.gpu", "is not a resource: use gpus, gpu_type"),
        ({"": 4}, 'resources.""', "is not a resource"),
    ],
)
def test_a_bad_resource_names_its_key(value, field, words):
    found = errors_of({**REQUEST, "backend": "kubernetes", "resources": value})
    assert [f for f, _ in found] == [field]
    assert words in found[0][1]


def test_resources_must_be_an_object():
    assert errors_of({**REQUEST, "backend": "kubernetes", "resources": [4]})[0][0] == "resources"


def test_every_field_parses_and_gpu_types_are_case_insensitive():
    errors: list[FieldError] = []
    parsed = parse_resources(
        {"gpus": 8.0, "gpu_type": "a100-80gb", "nodes": 2, "cpus": 7.5, "memory_gb": 64, "max_duration_minutes": 90},
        res.GPU_TYPES,
        errors,
    )
    assert errors == []
    assert parsed == Resources(gpus=8, gpu_type="A100-80GB", nodes=2, cpus=7.5, memory_gb=64, max_duration_minutes=90)
    assert parse_resources({"gpus": None}, res.GPU_TYPES, errors) == Resources() and errors == []


def test_resources_is_not_a_trainer_flag_and_is_stored_and_shown():
    s = settings()
    job, _ = job_from({**README_KUBERNETES, "resources": {"gpus": 4, "gpu_type": "h100"}}, policy=s.request_policy())
    assert not any("resources" in a or "gpu" in a for a in job.args)
    assert job.to_summary()["resources"] == {"gpus": 4, "gpu_type": "H100"}
    assert (
        from_record(json.loads(json.dumps(to_record(job), default=str)) | {"createdAt": job.created_at, "updatedAt": job.updated_at}).resources == job.resources
    )
    plain, _ = job_from(README_KUBERNETES)
    assert plain.to_summary()["resources"] == {}


# ---- what each backend can place -------------------------------------------------------------------
@pytest.mark.parametrize(
    "backend, value, field, words",
    [
        ("local", {"nodes": 2}, "resources.nodes", "the local backend runs on this machine only"),
        ("vertex", {"gpu_type": "H200", "gpus": 4}, "resources.gpus", "H200 only as 8 GPUs per node"),
        ("vertex", {"gpu_type": "B200", "gpus": 1}, "resources.gpus", "B200 only as 8"),
        ("vertex", {"gpus": 3}, "resources.gpus", "default GPU type A100 (resources.gpu_type unset) only as 1, 2, 4, 8, 16"),
        ("vertex", {"gpus": 8, "gpu_type": "H100", "cpus": 32}, "resources.cpus", "sizes CPUs and memory by machine type"),
        ("vertex", {"gpus": 0, "gpu_type": "L4"}, "resources.gpu_type", "needs at least one GPU"),
        ("kubernetes", {"gpus": 0, "gpu_type": "L4"}, "resources.gpu_type", "needs at least one GPU"),
    ],
)
def test_a_combination_the_backend_cant_place_is_a_400_listing_what_exists(backend, value, field, words):
    body = {**REQUEST, "backend": backend, "resources": value}
    if backend == "local":
        body["output_dir"] = "/tmp/model"
        body["dataset_file"] = "/tmp/data.jsonl"
    found = errors_of(body)
    assert [f for f, _ in found] == [field], found
    assert words in found[0][1]


def test_a_type_a_backends_table_lacks_lists_the_types_it_has_and_the_setting():
    table = json.dumps({"L4": {"pool": "l4"}, "H100": {"pool": "h100"}})
    [(field, message)] = errors_of({**REQUEST, "backend": "kubernetes", "resources": {"gpu_type": "A100"}}, K8S_GPU_NODE_SELECTORS=table)
    assert field == "resources.gpu_type"
    assert message == "the kubernetes backend has no A100 GPUs; it has L4, H100 (more through K8S_GPU_NODE_SELECTORS)"


def test_settings_add_gpu_types_the_api_then_accepts():
    table = json.dumps({**res.DEFAULT_K8S_GPU_NODE_SELECTORS, "RTX-6000": {"pool": "rtx"}})
    s = settings(K8S_GPU_NODE_SELECTORS=table)
    req = normalise_request({**REQUEST, "backend": "kubernetes", "resources": {"gpu_type": "rtx-6000"}}, s.request_policy())
    assert req.resources.gpu_type == "RTX-6000"
    # ... on Kubernetes only: Vertex's table has no such machine.
    [(field, message)] = errors_of({**REQUEST, "backend": "vertex", "resources": {"gpu_type": "rtx-6000"}}, K8S_GPU_NODE_SELECTORS=table)
    assert field == "resources.gpu_type" and "has L4, A100, A100-80GB, H100, H200, B200 (more through VERTEX_MACHINE_TYPES)" in message


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"K8S_GPU_NODE_SELECTORS": "[1]"}, "K8S_GPU_NODE_SELECTORS must be a JSON object"),
        ({"K8S_GPU_NODE_SELECTORS": '{"H100": "nvidia-h100"}'}, "K8S_GPU_NODE_SELECTORS['H100'] must be a non-empty JSON object of strings"),
        ({"VERTEX_MACHINE_TYPES": '{"H100": {"machines": {"8": "a3-highgpu-8g"}}}'}, "VERTEX_MACHINE_TYPES['H100'] must be"),
        ({"VERTEX_MACHINE_TYPES": '{"H100": {"accelerator": "X", "machines": {"32": "m"}}}'}, "VERTEX_MACHINE_TYPES['H100'] must be"),
    ],
)
def test_a_broken_gpu_table_makes_its_backend_unavailable(env, needle):
    s = settings(**env)
    assert any(needle in e for e in s.config_errors), s.config_errors
    [setting] = env
    backend = KUBERNETES if setting.startswith("K8S_") else VERTEX
    assert setting in (s.backend_problems()[backend] or ""), s.backend_problems()


def test_vertex_submitting_refuses_a_secret_without_a_reference_up_front():
    # Per-job secrets off (VERTEX_JOB_SECRETS=0): only configured references pass.
    found = errors_of({**README_KUBERNETES, "backend": "vertex", "dataset_file": "gs://b/d.jsonl"}, VERTEX_SUBMIT="1", VERTEX_JOB_SECRETS="0")
    assert found == [
        (
            "env.HF_TOKEN",
            "the vertex backend passes secrets only as Secret Manager references and none is configured for HF_TOKEN (set VERTEX_HF_TOKEN_SECRET or set VERTEX_JOB_SECRETS=1)",
        )
    ]
    found = errors_of(
        {**REQUEST, "backend": "vertex", "env": {"WANDB_API_KEY": "k"}},
        VERTEX_SUBMIT="1",
        VERTEX_JOB_SECRETS="0",
        VERTEX_HF_TOKEN_SECRET="projects/p/secrets/hf/versions/1",
    )
    assert found[0][0] == "env.WANDB_API_KEY" and "set VERTEX_JOB_SECRETS=1" in found[0][1]
    # With per-job secrets (the default) any secret passes.
    normalise_request({**REQUEST, "backend": "vertex", "env": {"WANDB_API_KEY": "k"}}, settings(VERTEX_SUBMIT="1").request_policy())
    # With the reference configured, or on a dry run, the request is accepted.
    ok = {**REQUEST, "backend": "vertex", "hf_token": "hf_x"}
    normalise_request(ok, settings(VERTEX_SUBMIT="1", VERTEX_HF_TOKEN_SECRET="projects/p/secrets/hf/versions/1").request_policy())
    normalise_request(ok, settings().request_policy())


# ---- Kubernetes ------------------------------------------------------------------------------------
GPUS = [None, 0, 1, 4, 8]
TYPES = [None, *res.GPU_TYPES]
NODES = [None, 2, 4]
EXTRAS = [{}, {"cpus": 7.5, "memory_gb": 64, "max_duration_minutes": 720}]
COMBINATIONS = [
    {k: v for k, v in {"gpus": g, "gpu_type": t, "nodes": n, **x}.items() if v is not None}
    for g, t, n, x in itertools.product(GPUS, TYPES, NODES, EXTRAS)
    if not (g == 0 and t is not None)  # refused by the api (see above)
]


@pytest.mark.parametrize("kueue", [None, "team-a"])
def test_every_kubernetes_combination_passes_the_strict_schema(kueue):
    latest = kubernetes_validate.utils.latest_version()
    env = {"K8S_KUEUE_QUEUE": kueue} if kueue else {}
    for i, resources in enumerate(COMBINATIONS):
        job, secret, cfg = k8s_job(resources, **env)
        manifest = render_manifest(job, sorted(secret), cfg)
        validate_manifest(manifest, "1.30")  # the oldest version we support: the launcher's own check
        validate_manifest(manifest, latest)
        if i % 25 == 0:  # and, for a sample, the library's own (slower) validator
            for item in manifest["items"]:
                kubernetes_validate.validate(item, latest, strict=True)
        nodes = resources.get("nodes", 1)
        assert [i["kind"] for i in manifest["items"]] == ["Secret", "Job", *(["Service"] if nodes > 1 else [])], resources
    assert len(COMBINATIONS) > 150


def test_four_h100s_with_a_deadline():
    job, secret, cfg = k8s_job({"gpus": 4, "gpu_type": "H100", "max_duration_minutes": 720})
    kjob, pod, container = containers(render_manifest(job, sorted(secret), cfg))
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "4"}, "requests": {"nvidia.com/gpu": "4"}}
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert kjob["spec"]["activeDeadlineSeconds"] == 43200
    assert container["command"] == ["python", "-m", "trainer.launch"]
    assert container["args"][:2] == ["--nproc_per_node=4", "--"] and container["args"][2:] == list(job.args)
    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert "completionMode" not in kjob["spec"] and "subdomain" not in pod
    assert not any(e["name"].startswith("PET_") for e in container["env"])


def test_unset_resources_keep_todays_settings():
    job, secret, cfg = k8s_job({}, K8S_RESOURCE_LIMITS='{"nvidia.com/gpu": 1, "cpu": "4"}', K8S_NODE_SELECTOR='{"pool": "gpu"}')
    kjob, pod, container = containers(render_manifest(job, sorted(secret), cfg))
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1", "cpu": "4"}
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert container["args"][0] == "--nproc_per_node=1" and "volumes" not in pod and "activeDeadlineSeconds" not in kjob["spec"]


def test_cpus_memory_and_no_gpu_override_the_settings():
    job, secret, cfg = k8s_job({"gpus": 0, "cpus": 7.5, "memory_gb": 30}, K8S_RESOURCE_LIMITS='{"nvidia.com/gpu": 1, "cpu": "4", "memory": "16Gi"}')
    _, pod, container = containers(render_manifest(job, sorted(secret), cfg))
    assert container["resources"]["limits"] == {"cpu": "7.5", "memory": "30Gi"}
    assert container["args"][0] == "--nproc_per_node=1"  # one CPU process
    # The GPU type adds its selector to K8S_NODE_SELECTOR; its key wins.
    job, secret, cfg = k8s_job({"gpu_type": "L4"}, K8S_NODE_SELECTOR='{"pool": "gpu", "cloud.google.com/gke-accelerator": "x"}')
    assert containers(render_manifest(job, sorted(secret), cfg))[1]["nodeSelector"] == {"pool": "gpu", "cloud.google.com/gke-accelerator": "nvidia-l4"}


def test_two_nodes_of_eight_gpus_is_an_indexed_job_with_its_headless_service():
    job, secret, cfg = k8s_job({"nodes": 2, "gpus": 8, "gpu_type": "H100"}, K8S_KUEUE_QUEUE="team-a", K8S_NAMESPACE="ml")
    manifest = render_manifest(job, sorted(secret), cfg)
    kjob, pod, container = containers(manifest)
    name = kjob["metadata"]["name"]
    assert kjob["spec"]["completionMode"] == "Indexed" and kjob["spec"]["completions"] == 2 and kjob["spec"]["parallelism"] == 2
    assert kjob["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert pod["subdomain"] == name
    env = {e["name"]: e for e in container["env"]}
    assert env["PET_NNODES"]["value"] == "2" and env["PET_NPROC_PER_NODE"]["value"] == "8"
    assert env["PET_NODE_RANK"]["valueFrom"] == {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}
    assert env["PET_MASTER_ADDR"]["value"] == f"{name}-0.{name}" and env["PET_MASTER_PORT"]["value"] == "29500"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "HF_TOKEN"
    service = manifest["items"][-1]
    assert service["kind"] == "Service" and service["metadata"]["name"] == name and service["metadata"]["namespace"] == "ml"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    # The Service selects exactly this job's pods (the template's labels).
    assert service["spec"]["selector"].items() <= kjob["spec"]["template"]["metadata"]["labels"].items()
    assert container["args"][0] == "--nproc_per_node=8"


@pytest.mark.parametrize("name", ["x" * 80, "123 starts with a digit", "ok"])
def test_several_node_names_leave_room_for_each_pods_host_name(name):
    job, secret, cfg = k8s_job({"nodes": 64}, body={**README_KUBERNETES, "job_name": name})
    kname = job_name(job)
    assert len(f"{kname}-63") <= 63 and kname[0].isalpha()
    assert kname == job_name(job)  # the same on every attempt
    manifest = render_manifest(job, sorted(secret), cfg)
    assert {i["metadata"]["name"] for i in manifest["items"] if i["kind"] != "Secret"} == {kname}


def test_the_manifest_route_shows_every_object():
    job, secret, cfg = k8s_job({"nodes": 2, "gpus": 8})
    stored = job.replace(manifest=render_manifest(job, sorted(secret), cfg), dry_run=True)
    view = manifest_view(stored)
    assert view["backend"] == "kubernetes" and view["dryRun"] is True
    assert [o["kind"] for o in view["objects"]] == ["Secret", "Job", "Service"]
    assert view["objects"][0]["stringData"] == {"HF_TOKEN": "[redacted]"} and "hf_xxx" not in json.dumps(view)


# ---- Vertex ----------------------------------------------------------------------------------------
def vertex_job(resources: dict, *, body: dict | None = None, **env: str):
    s = settings(**env)
    job, secret = job_from({**(body or README_VERTEX), "resources": resources}, policy=s.request_policy())
    return job, secret, VertexSettings.of(s)


VERTEX_ROWS = [(t, int(n), m, row["accelerator"]) for t, row in res.DEFAULT_VERTEX_MACHINE_TYPES.items() for n, m in row["machines"].items()]


@pytest.mark.parametrize("gpu_type, gpus, machine, accelerator", VERTEX_ROWS, ids=[f"{r[0]}x{r[1]}" for r in VERTEX_ROWS])
def test_the_vertex_table(gpu_type, gpus, machine, accelerator):
    job, secret, cfg = vertex_job({"gpu_type": gpu_type.lower(), "gpus": gpus})
    spec = render_custom_job(job, sorted(secret), cfg)
    pool = spec["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"] == {"machineType": machine, "acceleratorType": accelerator, "acceleratorCount": gpus}
    assert pool["containerSpec"]["args"][:2] == [f"--nproc_per_node={gpus}", "--"]
    assert to_proto(spec).job_spec.worker_pool_specs[0].machine_spec.accelerator_type.name == accelerator  # the client knows the enum


def test_the_vertex_table_has_the_documented_machines():
    table = res.DEFAULT_VERTEX_MACHINE_TYPES
    assert table["A100"]["accelerator"] == "NVIDIA_TESLA_A100" and table["A100"]["machines"]["8"] == "a2-highgpu-8g"
    assert table["A100-80GB"]["machines"]["4"] == "a2-ultragpu-4g" and table["A100-80GB"]["accelerator"] == "NVIDIA_A100_80GB"
    assert table["H100"]["machines"]["8"] == "a3-highgpu-8g" and table["H100"]["accelerator"] == "NVIDIA_H100_80GB"
    assert table["H200"] == {"accelerator": "NVIDIA_H200_141GB", "machines": {"8": "a3-ultragpu-8g"}}
    assert table["B200"] == {"accelerator": "NVIDIA_B200", "machines": {"8": "a4-highgpu-8g"}}
    assert all(m.startswith("g2-standard-") for m in table["L4"]["machines"].values()) and table["L4"]["accelerator"] == "NVIDIA_L4"


@pytest.mark.parametrize(
    "resources, env, machine",
    [
        ({}, {}, {"machineType": "a2-highgpu-1g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 1}),
        (
            {},
            {"VERTEX_MACHINE_TYPE": "a2-highgpu-2g", "VERTEX_ACCELERATOR_COUNT": "2"},
            {"machineType": "a2-highgpu-2g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 2},
        ),
        ({"gpus": 4}, {}, {"machineType": "a2-highgpu-4g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 4}),
        ({"gpus": 2}, {"VERTEX_ACCELERATOR_TYPE": "NVIDIA_L4"}, {"machineType": "g2-standard-24", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}),
        ({"gpu_type": "H200"}, {}, {"machineType": "a3-ultragpu-8g", "acceleratorType": "NVIDIA_H200_141GB", "acceleratorCount": 8}),
        ({"gpu_type": "H100"}, {}, {"machineType": "a3-highgpu-1g", "acceleratorType": "NVIDIA_H100_80GB", "acceleratorCount": 1}),
        ({"gpus": 0}, {"VERTEX_CPU_MACHINE_TYPE": "n2-standard-16"}, {"machineType": "n2-standard-16"}),
        (
            {"gpu_type": "GB200", "gpus": 4},
            {"VERTEX_MACHINE_TYPES": '{"GB200": {"accelerator": "NVIDIA_GB200", "machines": {"4": "a4x-highgpu-4g"}}}'},
            {"machineType": "a4x-highgpu-4g", "acceleratorType": "NVIDIA_GB200", "acceleratorCount": 4},
        ),
    ],
)
def test_vertex_machine_defaults_and_overrides(resources, env, machine):
    job, secret, cfg = vertex_job(resources, **env)
    spec = render_custom_job(job, sorted(secret), cfg)
    assert spec["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == machine
    to_proto(spec)


def test_vertex_nodes_are_two_worker_pools_and_the_deadline_a_timeout():
    job, secret, cfg = vertex_job({"gpu_type": "H100", "gpus": 8, "nodes": 4, "max_duration_minutes": 90})
    spec = render_custom_job(job, sorted(secret), cfg)
    chief, workers = spec["jobSpec"]["workerPoolSpecs"]
    assert chief["replicaCount"] == 1 and workers["replicaCount"] == 3
    assert chief["machineSpec"] == workers["machineSpec"] == {"machineType": "a3-highgpu-8g", "acceleratorType": "NVIDIA_H100_80GB", "acceleratorCount": 8}
    assert chief["containerSpec"] == workers["containerSpec"]
    assert chief["containerSpec"]["command"] == ["python", "-m", "trainer.launch"]
    assert spec["jobSpec"]["scheduling"] == {"timeout": "5400s"}
    proto = to_proto(spec)
    assert proto.job_spec.scheduling.timeout.total_seconds() == 5400 and proto.job_spec.worker_pool_specs[1].replica_count == 3
    # Unset nodes: VERTEX_REPLICA_COUNT, as before.
    job, secret, cfg = vertex_job({}, VERTEX_REPLICA_COUNT="3")
    assert [p["replicaCount"] for p in render_custom_job(job, sorted(secret), cfg)["jobSpec"]["workerPoolSpecs"]] == [1, 2]


def test_a_vertex_dry_run_with_secrets_renders_and_shows_its_spec():
    job, secret, cfg = vertex_job({}, body={**README_KUBERNETES, "backend": "vertex", "dataset_file": "gs://b/d.jsonl"}, VERTEX_JOB_SECRETS="0")
    assert not cfg.submit and secret == {"HF_TOKEN": "hf_xxx"}
    spec = render_custom_job(job, sorted(secret), cfg)
    env = spec["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
    assert env == [{"name": "HF_TOKEN_SECRET", "value": "[no Secret Manager reference configured: set VERTEX_HF_TOKEN_SECRET]"}]
    assert "hf_xxx" not in json.dumps(spec)
    view = manifest_view(job.replace(manifest=spec, dry_run=True), VertexRules())
    assert [o["kind"] for o in view["objects"]] == ["CustomJob"] and view["objects"][0]["jobSpec"] == spec["jobSpec"]
    # Submitting, the launcher still refuses it (the api already does, up front).
    with pytest.raises(PermanentError) as info:
        render_custom_job(job, sorted(secret), VertexSettings.of(settings(VERTEX_SUBMIT="1", VERTEX_JOB_SECRETS="0")))
    assert info.value.reason == "SecretNotSupported"


# ---- a several-pod Indexed Job, as the watcher and reconcile read it --------------------------------
INDEXED = {"metadata": {"name": "j"}, "spec": {"completionMode": "Indexed", "completions": 2, "parallelism": 2, "backoffLimit": 0}, "status": {}}


def ipod(index: int, phase: str, **status) -> dict:
    states = {
        "Running": {"running": {}},
        "Failed": {"terminated": {"reason": "Error", "exitCode": status.pop("code", 1), "finishedAt": status.pop("at", "2026-11-29T12:00:00Z")}},
        "Succeeded": {"terminated": {"reason": "Completed", "exitCode": 0}},
    }
    body = {"phase": phase, **status}
    if phase in states:
        body["containerStatuses"] = [{"name": "trainer", "state": states[phase]}]
    name = f"j-{index}-abcde"
    return {
        "metadata": {
            "name": name,
            "uid": name,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            "creationTimestamp": "2026-11-29T12:00:00Z",
        },
        "status": body,
    }


UNSCHEDULABLE = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}


@pytest.mark.parametrize(
    "pods, job_status, expected",
    [
        ([], {}, ("Pending", None, "0 of 2 pods running; index 0 has no pod yet")),
        ([ipod(0, "Running")], {}, ("Pending", None, "1 of 2 pods running; index 1 has no pod yet")),
        ([ipod(0, "Running"), ipod(1, "Pending", **UNSCHEDULABLE)], {}, ("Pending", "Unschedulable", "index 1 (pod j-1-abcde): 0/3 nodes")),
        ([ipod(0, "Running"), ipod(1, "Running")], {}, ("Running", None, None)),
        ([ipod(0, "Succeeded"), ipod(1, "Running")], {}, ("Running", None, None)),
        ([ipod(0, "Running"), ipod(1, "Failed", code=3)], {"failed": 1}, ("Failed", "Error", "index 1 (pod j-1-abcde): Error")),
        (
            [ipod(0, "Failed", code=143, at="2026-11-29T12:00:09Z"), ipod(1, "Failed", code=1, at="2026-11-29T12:00:01Z")],
            {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}]},
            ("Failed", "BackoffLimitExceeded", "index 1 (pod j-1-abcde): Error; limit"),
        ),
        ([ipod(0, "Succeeded"), ipod(1, "Succeeded")], {"conditions": [{"type": "Complete", "status": "True"}]}, ("Complete", "Completed", None)),
    ],
)
def test_an_indexed_job_is_read_index_by_index(pods, job_status, expected):
    job = {**INDEXED, "status": job_status}
    observed = job_state(job, pods)
    assert (observed.state, observed.reason, observed.message) == expected


def test_a_failed_index_within_the_retries_is_backoff_naming_it():
    job = {**INDEXED, "spec": {**INDEXED["spec"], "backoffLimit": 2}, "status": {"failed": 1}}
    observed = job_state(job, [ipod(0, "Running"), ipod(1, "Failed")])
    assert observed.state == "Pending" and observed.reason == "BackOff" and observed.message.startswith("index 1 (pod j-1-abcde)")
