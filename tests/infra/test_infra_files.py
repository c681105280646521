"""Offline checks of the deploy artifacts: cloudbuild.yaml, the function staging script, the Terraform
contract with the code (topics, entry points, tolerations) and the Kubernetes RBAC the launcher needs.

The full infrastructure checks (terraform validate, checkov, kubernetes-validate, hadolint) run in
.ci/infra-checks.sh; these are the fast ones that also belong in `make test`.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "scripts"))
check_cloudbuild = importlib.import_module("check_cloudbuild")

ENTRY_POINTS = ["api", "launcher", "status_sync", "submit", "notify", "reconcile"]


def test_cloudbuild_is_sane() -> None:
    assert check_cloudbuild.check() == []


def test_cloudbuild_check_catches_an_undeclared_substitution(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    doc["steps"][0]["args"].append("${_NOT_DECLARED}")
    bad = tmp_path / "cloudbuild.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert any("_NOT_DECLARED" in e for e in check_cloudbuild.check(bad, ROOT))


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("staged") / "functions"
    subprocess.run(
        ["bash", str(ROOT / "infra/scripts/stage_functions.sh"), str(out)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    return out


def test_staged_folder_has_what_cloud_functions_needs(staged: Path) -> None:
    for rel in ["main.py", "requirements.txt", "functions/main.py", "shared/__init__.py", "trainer/__init__.py", "trainer/flags.py"]:
        assert (staged / rel).is_file(), rel
    assert not list(staged.rglob("__pycache__"))
    reqs = (staged / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("functions-framework") for r in reqs)


def test_staged_main_exports_every_entry_point(staged: Path) -> None:
    # Import in a fresh interpreter rooted at the staged folder, as Cloud Functions does.
    code = (
        "import main, functions_framework._function_registry as r\n"
        f"for name in {ENTRY_POINTS!r}:\n"
        "    assert callable(getattr(main, name)), name\n"
        "print(r.REGISTRY_MAP['launcher'], r.REGISTRY_MAP['api'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=staged, capture_output=True, text=True, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cloudevent", "http"]


def test_terraform_uses_the_fixed_topic_names() -> None:
    main_tf = (ROOT / "infra/terraform/platform/main.tf").read_text()
    for topic in ["train-requests", "training-events", "train-submissions", "train-submissions-rejected"]:
        assert f'"{topic}"' in main_tf


def test_default_tolerations_match_every_gpu_taint() -> None:
    variables = (ROOT / "infra/terraform/platform/variables.tf").read_text()
    assert '{\\"key\\":\\"nvidia.com/gpu\\",\\"operator\\":\\"Exists\\",\\"effect\\":\\"NoSchedule\\"}' in variables
    for cluster in ["gke", "eks", "aks", "coreweave"]:
        text = (ROOT / f"infra/terraform/clusters/{cluster}/main.tf").read_text()
        assert "nvidia.com/gpu" in text and "present" in text, cluster
        assert "NO_SCHEDULE" in text or "NoSchedule" in text, cluster


def test_firestore_indexes_file_is_in_firebase_format() -> None:
    doc = json.loads((ROOT / "infra/firestore/indexes.json").read_text())
    assert doc["indexes"]
    for idx in doc["indexes"]:
        assert idx["collectionGroup"] and len(idx["fields"]) >= 2
        for field in idx["fields"]:
            assert "order" in field or "arrayConfig" in field


def _rules(role: str) -> dict[str, set[str]]:
    docs = list(yaml.safe_load_all((ROOT / "infra/k8s/rbac.yaml").read_text()))
    (found,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == role]
    out: dict[str, set[str]] = {}
    for rule in found["rules"]:
        for res in rule["resources"]:
            out.setdefault(res, set()).update(rule["verbs"])
    return out


def test_launcher_rbac_is_exactly_jobs_and_secrets() -> None:
    assert _rules("training-launcher") == {
        "jobs": {"create", "get", "list", "delete"},
        "secrets": {"create", "get", "patch", "delete"},
        "services": {"create", "get", "patch"},  # a several-node job's headless Service, owned by its Job
    }


def test_watcher_rbac_watches_jobs_pods_logs_events() -> None:
    rules = _rules("training-watcher")
    for res in ["jobs", "pods", "pods/log", "events"]:
        assert {"get", "list", "watch"} <= rules[res], res
    assert all(not ({"create", "delete", "patch", "update"} & verbs) for verbs in rules.values())


# ---- Pub/Sub subscriptions: one description for Terraform and the local stack ----------------------


def _subscriptions() -> dict:
    return json.loads((ROOT / "infra/terraform/platform/pubsub_subscriptions.json").read_text())


def _function_timeouts() -> dict[str, int]:
    import re

    text = (ROOT / "infra/terraform/platform/functions.tf").read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"\n    (\w+) = \{[^}]*?\n      timeout\s*=\s*(\d+)", text)}


def test_terraform_reads_the_subscriptions_file_and_hard_codes_none_of_it() -> None:
    pubsub_tf = (ROOT / "infra/terraform/platform/pubsub.tf").read_text()
    assert 'jsondecode(file("${path.module}/pubsub_subscriptions.json"))' in pubsub_tf
    for setting in [
        "enable_message_ordering",
        "ack_deadline_seconds",
        "max_delivery_attempts",
        "minimum_backoff",
        "maximum_backoff",
        "message_retention_duration",
    ]:
        for line in pubsub_tf.splitlines():
            if line.strip().startswith(f"{setting} "):
                value = line.split("=", 1)[1]
                assert "local.pubsub" in value or "each.value." in value, line
    main_tf = (ROOT / "infra/terraform/platform/main.tf").read_text()
    assert "dead_lettered = keys(local.push_subscriptions)" in main_tf
    variables = (ROOT / "infra/terraform/platform/variables.tf").read_text()
    for var in ["pubsub_max_delivery_attempts", "pubsub_minimum_backoff", "pubsub_maximum_backoff"]:
        block = variables.split(f'variable "{var}"', 1)[1].split("}", 1)[0]
        assert "default     = null" in block, var  # the file holds the default


def test_subscriptions_file_matches_the_code_and_the_functions() -> None:
    from shared.settings import Settings

    spec = _subscriptions()
    settings = Settings()
    main_tf = (ROOT / "infra/terraform/platform/main.tf").read_text()
    timeouts = _function_timeouts()
    assert set(timeouts) >= {"launcher", "status_sync", "submit", "notify"}, timeouts
    for key in {**spec["push"], **spec["pull"]}:
        name = getattr(settings, f"topic_{key}")  # a TOPIC_* setting ...
        assert f'{key} = "{name}"' in " ".join(main_tf.split()), key  # ... and a key of local.topics
    for key, sub in spec["push"].items():
        # Pub/Sub redelivers what is not answered within the ack deadline: never before the function's timeout.
        assert sub["ack_deadline_seconds"] >= timeouts[sub["function"]], key
        assert 10 <= sub["ack_deadline_seconds"] <= 600, key
    # Only the events of one job need their order; an ordered subscription with a dead-letter policy
    # stops pushing on the emulator once it dead-letters.
    assert [k for k, s in spec["push"].items() if s["enable_message_ordering"]] == ["training_events"]
    assert 5 <= spec["max_delivery_attempts"] <= 100


def test_local_stack_creates_what_terraform_creates() -> None:
    """`create_subscriptions` (make run-emulators) against a recording bus: the same names and settings."""
    from functions.dev.local_stack import create_subscriptions
    from shared.settings import Settings

    class Recorder:
        project_id = "p"

        def __init__(self) -> None:
            self.topics: list[str] = []
            self.push: dict[str, dict] = {}
            self.pull: dict[str, dict] = {}

        def ensure_topics(self, topics: list[str]) -> None:
            self.topics += topics

        def ensure_push_subscription(self, topic: str, name: str, endpoint: str, **kw) -> None:
            self.push[name] = {"topic": topic, "endpoint": endpoint, **kw}

        def ensure_pull_subscription(self, topic: str, name: str, **kw) -> None:
            self.pull[name] = {"topic": topic, **kw}

    bus = Recorder()
    create_subscriptions(bus, Settings(), {"launcher": "http://l", "status_sync": "http://s", "submit": "http://b", "notify": "http://n"})
    assert set(bus.push) == {"train-requests-launcher", "training-events-status-sync", "train-submissions-submit", "job-transitions-notify"}
    assert {n: s["enable_message_ordering"] for n, s in bus.push.items()} == {
        "train-requests-launcher": False,
        "training-events-status-sync": True,
        "train-submissions-submit": False,
        "job-transitions-notify": False,
    }
    submit = bus.push["train-submissions-submit"]
    assert submit["endpoint"] == "http://b/projects/p/topics/train-submissions"
    assert submit["dead_letter_topic"] == "train-submissions-dead-letter" and submit["max_attempts"] == 5
    assert (submit["ack_deadline_seconds"], submit["minimum_backoff_seconds"], submit["maximum_backoff_seconds"]) == (300, 10, 600)
    assert set(bus.pull) == {
        "train-requests-dead-letter",
        "training-events-dead-letter",
        "train-submissions-dead-letter",
        "job-transitions-dead-letter",
        "train-submissions-rejected-studio",
    }
    assert bus.pull["train-submissions-dead-letter"]["topic"] == "train-submissions-dead-letter"
    assert set(bus.topics) >= {"train-submissions", "train-submissions-dead-letter", "train-submissions-rejected"}
