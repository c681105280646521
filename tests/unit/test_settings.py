"""Settings: the old service's variables and defaults, ours, and loud JSON errors."""

from __future__ import annotations

import pytest

from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.vertex_settings import VertexSettings
from shared.domain.backends.kubernetes import KUBERNETES
from shared.domain.backends.local import LOCAL
from shared.settings import Settings, settings_markdown

OLD_DEFAULTS = [
    ("port", 4000),
    ("max_log_chars", 1_000_000),
    ("default_training_backend", KUBERNETES),
    ("k8s_namespace", "default"),
    ("k8s_apply", False),
    ("k8s_backoff_limit", 0),
    ("k8s_ttl_seconds_after_finished", None),
    ("vertex_region", "us-central1"),
    ("vertex_machine_type", "a2-highgpu-1g"),
    ("vertex_accelerator_type", "NVIDIA_TESLA_A100"),
    ("vertex_accelerator_count", 1),
    ("vertex_replica_count", 1),
    ("vertex_submit", False),
    ("store_kind", "sqlite"),
    ("bus_kind", "inline"),
    ("topic_train_requests", "train-requests"),
    ("topic_training_events", "training-events"),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith(("K8S_", "VERTEX_", "KUBECONFIG")) or name in (
            "PORT",
            "MAX_LOG_CHARS",
            "DEFAULT_TRAINING_BACKEND",
            "PROJECT_ID",
            "GOOGLE_CLOUD_PROJECT",
            "STORE_KIND",
            "BUS_KIND",
            "API_TOKENS",
            "CORS_ORIGINS",
        ):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("field,default", OLD_DEFAULTS, ids=[f for f, _ in OLD_DEFAULTS])
def test_defaults(clean_env: pytest.MonkeyPatch, field: str, default: object) -> None:
    s = Settings()
    # A backend's variables are its settings group's fields (`k8s_namespace`: KubernetesSettings.namespace).
    for prefix, group in (("k8s_", KubernetesSettings), ("vertex_", VertexSettings)):
        if field.startswith(prefix):
            assert getattr(s.group(group), field.removeprefix(prefix)) == default
            return
    assert getattr(s, field) == default


def test_environment_is_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PORT", "5000")
    clean_env.setenv("K8S_APPLY", "1")
    clean_env.setenv("K8S_NODE_SELECTOR", '{"pool": "gpu"}')
    clean_env.setenv("K8S_IMAGE_PULL_SECRETS", '["regcred", {"name": "other"}]')
    clean_env.setenv("PROJECT_ID", "proj")
    clean_env.setenv("DEFAULT_TRAINING_BACKEND", "local")
    s = Settings()
    k8s = s.group(KubernetesSettings)
    assert s.port == 5000 and k8s.apply is True
    assert k8s.node_selector == {"pool": "gpu"}
    assert k8s.image_pull_secrets == ["regcred", {"name": "other"}]
    assert s.group(VertexSettings).project == "proj" and s.project_id == "proj"
    assert s.default_training_backend is LOCAL
    assert s.config_errors == []


def test_vertex_project_wins_over_project_id(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PROJECT_ID", "a")
    clean_env.setenv("VERTEX_PROJECT", "b")
    assert Settings().group(VertexSettings).project == "b"


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("K8S_TOLERATIONS", "[{bad json", "K8S_TOLERATIONS is not valid JSON"),
        ("K8S_NODE_SELECTOR", '["a"]', "K8S_NODE_SELECTOR must be a JSON object"),
        ("K8S_RESOURCE_LIMITS", "nvidia.com/gpu=1", "K8S_RESOURCE_LIMITS is not valid JSON"),
        ("K8S_IMAGE_PULL_SECRETS", '{"name": "x"}', "K8S_IMAGE_PULL_SECRETS must be a JSON array"),
    ],
)
def test_bad_json_is_a_clear_error(clean_env: pytest.MonkeyPatch, name: str, value: str, fragment: str) -> None:
    clean_env.setenv(name, value)
    clean_env.setenv("K8S_TRAINING_IMAGE", "img")
    s = Settings()
    assert any(fragment in e for e in s.config_errors), s.config_errors
    # The backend that needs it is unavailable, and says why.
    assert fragment.split(" ")[0] in (s.backend_problems()[KUBERNETES] or "")


def test_tokens_and_origins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("API_TOKENS", " tok-SECRET-1-abcdefgh , tok-SECRET-2-abcdefgh,,")
    clean_env.setenv("CORS_ORIGINS", "https://studio.example.com")
    s = Settings()
    assert s.tokens == ("tok-SECRET-1-abcdefgh", "tok-SECRET-2-abcdefgh")
    assert s.cors_origin_list == ("https://studio.example.com",)
    assert "tok-SECRET" not in repr(s)


def test_invalid_scalar_is_an_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DEFAULT_TRAINING_BACKEND", "slurm")
    with pytest.raises(Exception, match="DEFAULT_TRAINING_BACKEND"):
        Settings()


def test_readme_table_lists_every_variable() -> None:
    table = settings_markdown()
    for name in ["PORT", "MAX_LOG_CHARS", "K8S_RESOURCE_LIMITS", "VERTEX_SUBMIT", "API_TOKENS", "CORS_ORIGINS", "STORE_KIND", "BUS_KIND"]:
        assert f"`{name}`" in table
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert table in readme, "README's configuration table is stale: regenerate with `python -m shared.settings`"
