"""The backend unit machinery: a backend's name, the registry, and each unit's settings group (its env
prefix, its defaults in one place, bad JSON a listed problem rather than a crash)."""

from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel, ValidationError

from shared.adapters.kubernetes.config import KubernetesSettings
from shared.adapters.local_unit import LocalSettings
from shared.adapters.registry import BUILT_IN, REGISTRY, Registry, registered
from shared.adapters.vertex_settings import VertexSettings
from shared.domain.backend import BackendKind, BackendRules
from shared.domain.backends.kubernetes import KUBERNETES
from shared.settings import Settings
from tests.fakes.toy_backend import ToySettings, ToyUnit

# Names a group reads without its prefix: the old service's, and the tools' own (kubectl's, gcloud's).
LEGACY_NAMES = {"PYTHON_BIN", "TRAIN_SCRIPT_PATH", "KUBECONFIG", "PROJECT_ID"}


def test_a_backend_name_is_one_object_per_name_and_a_plain_string_outside() -> None:
    assert BackendKind("kubernetes") is KUBERNETES and KUBERNETES == "kubernetes" and KUBERNETES.value == "kubernetes"
    assert pickle.loads(pickle.dumps(KUBERNETES)) is KUBERNETES
    assert {"kubernetes": 1}[KUBERNETES] == 1
    for bad in ("", "Kubernetes", "k8s cluster", "-x", "a" * 40):
        with pytest.raises(ValueError):
            BackendKind(bad)

    class M(BaseModel):
        backend: BackendKind

    assert M(backend="vertex").backend is BackendKind("vertex")
    assert M(backend="vertex").model_dump(mode="json") == {"backend": "vertex"}
    with pytest.raises(ValidationError):
        M(backend="Not A Name")


def test_the_registry_lists_the_built_in_backends_once_and_takes_a_test_backend_for_a_while() -> None:
    assert [str(k) for k in REGISTRY.kinds] == ["kubernetes", "vertex", "local"]
    with pytest.raises(ValueError, match="registered already"):
        Registry((*BUILT_IN, BUILT_IN[0]))
    with registered(ToyUnit()):
        assert REGISTRY.kinds[-1] == "toy" and REGISTRY.get("toy") is not None
        assert Settings(TOY_REGION="moon").backend_problems()["toy"] is None
    assert "toy" not in REGISTRY.kinds
    assert "toy" not in Settings().backend_problems()


@pytest.mark.parametrize("group", [KubernetesSettings, VertexSettings, LocalSettings, ToySettings], ids=lambda g: g.__name__)
def test_every_variable_of_a_group_is_under_its_prefix_and_in_the_readme_table(group) -> None:
    prefix = group.model_config["env_prefix"]
    from shared.settings import settings_markdown

    table = settings_markdown() if group is not ToySettings else ""
    for name in group.model_fields:
        names = group.env_names(name)
        assert names[0].startswith(prefix) or names[0] in LEGACY_NAMES, (name, names)
        assert all(n == n.upper() for n in names)
        if table:
            assert f"`{names[0]}`" in table


def test_a_group_reads_its_prefix_from_the_environment_and_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_NAMESPACE", "ml-jobs")
    monkeypatch.setenv("K8S_NODE_SELECTOR", '{"pool": "gpu"}')
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")
    k8s = KubernetesSettings()
    assert (k8s.namespace, k8s.node_selector, k8s.kubeconfig) == ("ml-jobs", {"pool": "gpu"}, "/etc/kube/config")
    # By variable name (what Settings(**values) passes on), over the environment; by field name in code.
    assert KubernetesSettings.from_values({"K8S_NAMESPACE": "other", "K8S_TRAINING_IMAGE": "img"}).namespace == "other"
    assert KubernetesSettings(image="img", tolerations=[]).tolerations == []
    # Blank is unset, as the old service read it.
    monkeypatch.setenv("K8S_NAMESPACE", " ")
    assert KubernetesSettings().namespace == "default"


def test_defaults_live_in_the_group_and_are_not_shared_between_instances() -> None:
    a, b = KubernetesSettings(), KubernetesSettings()
    a.tolerations.append({"key": "x"})
    assert b.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert VertexSettings().machine_table["A100"] is not VertexSettings().machine_table["A100"]


@pytest.mark.parametrize(
    "variable, value, problem",
    [
        ("K8S_TOLERATIONS", "[{bad", "K8S_TOLERATIONS is not valid JSON"),
        ("K8S_NODE_SELECTOR", "[1]", "K8S_NODE_SELECTOR must be a JSON object"),
        ("K8S_GPU_NODE_SELECTORS", '{"H100": {}}', "K8S_GPU_NODE_SELECTORS['H100'] must be a non-empty JSON object of strings"),
        ("VERTEX_MACHINE_TYPES", '{"H100": {"machines": {}}}', "VERTEX_MACHINE_TYPES['H100'] must be"),
    ],
)
def test_bad_json_makes_its_backend_unavailable_never_a_crash(variable: str, value: str, problem: str) -> None:
    s = Settings(**{variable: value, "K8S_TRAINING_IMAGE": "img", "VERTEX_PROJECT": "p", "VERTEX_IMAGE_URI": "i"})
    backend = "kubernetes" if variable.startswith("K8S_") else "vertex"
    assert any(e.startswith(problem) for e in s.config_errors), s.config_errors
    assert problem in (s.backend_problems()[backend] or "")
    assert s.backend_problems()["local"] is None
    rules = s.backend_rules()[backend]
    assert isinstance(rules, BackendRules) and rules.problem == s.backend_problems()[backend]


def test_the_studio_root_of_the_local_backend_is_inside_its_roots(tmp_path) -> None:
    rules = Settings(LOCAL_ALLOWED_ROOTS=str(tmp_path)).backend_rules()["local"]
    assert rules.studio_output_root == str(tmp_path.resolve() / "studio")
