"""Adversarial requests, each a named test, end to end over real HTTP through the production surface
(functions-framework's app for `functions/main.py:api`, SQLite in tmp, a RecordingBus).

Every rejection is asserted the same way: a 4xx JSON body with `error`, the offending field named in
`errors[*].field` (400), nothing stored, nothing published. Decisions these tests pin down:
- env values may contain newlines (PEM keys, JSON credentials are multi-line) but not NUL (a C
  environment string can't hold one); every other text field (flag values, job_name, labels,
  hf_token) refuses all control characters;
- env names that change how the child runs are refused case-insensitively: Linux names are
  case-sensitive, so `path` alone is harmless there, but the same request may go to Vertex or a
  container runtime, and a refused lower-case name costs a caller nothing;
- nothing in a request chooses the image or the command: they come from settings only.

The hardening round of issue 12 (crash safety, a full disk, auth configuration, bounded connections,
protocol-level errors, small holes, validation gaps, the local topology) has its cases in their own
modules; `tests/integration/test_hardening_index.py` lists every one by its defect's number and name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
import requests

from functions.wiring import Container, set_container
from shared.adapters.sqlite_store import SqliteJobStore
from shared.ports import JobQuery
from tests.conftest import ServedApp
from tests.integration.conftest import RecordingBus, make_settings

REPO = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


class Stack:
    def __init__(self, url: str, bus: RecordingBus, container: Container, root: Path, outside: Path):
        self.url, self.bus, self.container, self.root, self.outside = url, bus, container, root, outside

    def post(self, body: Any = None, **kw: Any) -> requests.Response:
        if body is not None:
            kw["data"] = body if isinstance(body, (bytes, str)) or hasattr(body, "__next__") else json.dumps(body)
        kw.setdefault("headers", {"Content-Type": "application/json"})
        return requests.post(f"{self.url}/train", timeout=30, **kw)

    def jobs(self) -> list:
        return self.container.store.list(JobQuery(limit=500)).items

    def rejected(self, r: requests.Response, field: str | None, status: int = 400) -> dict:
        """A 4xx JSON naming `field`, and no trace of the request in the store or on the bus."""
        assert r.status_code == status, r.text[:500]
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert isinstance(body["error"], str) and body["error"]
        if field is not None:
            fields = [e["field"] for e in body["errors"]]
            assert field in fields, fields
        assert self.jobs() == []
        assert self.bus.messages == []
        return body

    def accepted(self, r: requests.Response) -> dict:
        assert r.status_code == 202, r.text[:500]
        return r.json()["job"]


@pytest.fixture(scope="module")
def served_url() -> Iterator[str]:
    # One server for the module; each test installs its own container (store, bus, settings) behind it.
    served = ServedApp(functions_framework.create_app(target="api", source=str(REPO / "functions" / "main.py")))
    try:
        yield served.url
    finally:
        served.close()


@pytest.fixture
def stack(tmp_path: Path, served_url: str) -> Iterator[Stack]:
    root = (tmp_path / "root").resolve()
    outside = (tmp_path / "outside").resolve()
    root.mkdir()
    outside.mkdir()
    bus = RecordingBus()
    container = Container(
        settings=make_settings(LOCAL_ALLOWED_ROOTS=str(root), MAX_BODY_BYTES=str(MB)),
        store=SqliteJobStore(tmp_path / "jobs.db"),
        bus=bus,
    )
    set_container(container)
    try:
        yield Stack(served_url, bus, container, root, outside)
    finally:
        set_container(None)


def k8s(**extra: Any) -> dict:
    return {"backend": "kubernetes", "dataset_file": "gs://b/d.jsonl", "output_dir": "/tmp/o", **extra}


def local(stack: Stack, **extra: Any) -> dict:
    return {"backend": "local", "dataset_file": str(stack.root / "d.jsonl"), "output_dir": str(stack.root / "out"), **extra}


# ---- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["learning rate", " learning_rate", "-learning_rate", "--learning_rate", "learning_rate=1", "=", "a=b", ""],
    ids=["space", "leading-space", "leading-dash", "double-dash", "equals-suffix", "equals", "a=b", "empty"],
)
def test_top_level_key_with_space_dash_or_equals_is_400(stack: Stack, key: str) -> None:
    stack.rejected(stack.post(k8s(**{key: 1})), key if key.strip() else json.dumps(key))


@pytest.mark.parametrize(
    "key", ["learning rate", "-learning_rate", "--output_dir", "output_dir=/etc", "a=b"], ids=["space", "leading-dash", "double-dash", "equals-value", "a=b"]
)
def test_trainer_args_key_with_space_dash_or_equals_is_400(stack: Stack, key: str) -> None:
    stack.rejected(stack.post(k8s(trainer_args={key: 1})), f"trainer_args.{key}")


@pytest.mark.parametrize("name", ["MY VAR", "-X", "A=B", "1ABC", "", "A-B"], ids=["space", "dash", "equals", "digit", "empty", "inner-dash"])
def test_env_name_with_space_dash_or_equals_is_400(stack: Stack, name: str) -> None:
    stack.rejected(stack.post(k8s(env={name: "v"})), f"env.{name}" if name else 'env.""')


# ---- values: newlines and NUL --------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\t", "\x1b"], ids=["newline", "cr", "nul", "tab", "escape"])
@pytest.mark.parametrize(
    "field,build",
    [
        ("job_name", lambda c: k8s(job_name=f"a{c}b")),
        ("model_id", lambda c: k8s(model_id=f"org/m{c}--lr=9")),
        ("lr_scheduler_type", lambda c: k8s(lr_scheduler_type=f"linear{c}")),
        ("trainer_args.lora_target_modules[0]", lambda c: k8s(trainer_args={"lora_target_modules": [f"q_proj{c}--seed=1"]})),
        ("output_dir", lambda c: k8s(output_dir=f"/tmp/o{c}x")),
        ("dataset_file", lambda c: k8s(dataset_file=f"gs://b/d{c}.jsonl")),
        ("labels.team", lambda c: k8s(labels={"team": f"a{c}b"})),
        ("hf_token", lambda c: k8s(hf_token=f"hf_a{c}b")),
    ],
    ids=["job_name", "model_id", "choice-flag", "list-flag", "output_dir", "dataset_file", "label", "hf_token"],
)
def test_control_characters_in_text_values_are_400(stack: Stack, field: str, build, char: str) -> None:
    stack.rejected(stack.post(build(char)), field)


def test_nul_in_env_value_is_400(stack: Stack) -> None:
    stack.rejected(stack.post(k8s(env={"WANDB_API_KEY": "abc\x00def"})), "env.WANDB_API_KEY")


def test_newline_in_env_value_is_accepted_and_only_published(stack: Stack) -> None:
    """Multi-line secrets (a PEM key) are legitimate: accepted, never stored, published once."""
    pem = "-----BEGIN KEY-----\nAAAA\nBBBB\n-----END KEY-----\n"
    job = stack.accepted(stack.post(k8s(env={"SERVICE_KEY": pem})))
    assert job["env"] == {"SERVICE_KEY": "[redacted]"}
    assert stack.bus.messages[0][1]["env"] == {"SERVICE_KEY": pem}
    assert "BBBB" not in json.dumps(requests.get(f"{stack.url}/jobs/{job['id']}").json())


def test_value_that_looks_like_a_flag_stays_a_value(stack: Stack) -> None:
    job = stack.accepted(stack.post(k8s(model_id="--output_dir=/etc")))
    assert "--model_id=--output_dir=/etc" in job["args"]
    assert not any(a.startswith("--output_dir=/etc") for a in job["args"])


# ---- sizes and shapes ----------------------------------------------------------------------------


def test_body_over_1_mb_with_content_length_is_413_json(stack: Stack) -> None:
    body = json.dumps(k8s(job_name="x" * (MB + 10))).encode()
    stack.rejected(stack.post(body, headers={"Content-Type": "application/json", "Content-Length": str(len(body))}), None, 413)


def test_body_over_1_mb_chunked_is_413_json(stack: Stack) -> None:
    chunks = iter([b'{"job_name": "', b"x" * (MB // 2), b"x" * (MB // 2), b"x" * 64, b'"}'])
    r = stack.post(chunks, headers={"Content-Type": "application/json"})  # no Content-Length: chunked
    assert "Content-Length" not in r.request.headers and r.request.headers.get("Transfer-Encoding") == "chunked"
    stack.rejected(r, None, 413)


def test_body_of_exactly_1_mb_is_read(stack: Stack) -> None:
    """The limit is the limit: a body of exactly MAX_BODY_BYTES is parsed (here: refused as a bad job_name)."""
    pad = MB - len(json.dumps(k8s(job_name="")).encode())
    body = json.dumps(k8s(job_name="x" * pad)).encode()
    assert len(body) == MB
    stack.rejected(stack.post(body), "job_name")


@pytest.mark.parametrize("shape", ["array", "object", "trainer_args", "env"])
def test_10000_deep_nesting_is_400_json(stack: Stack, shape: str) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    body = {
        "array": deep,
        "object": '{"a":' * 10_000 + "1" + "}" * 10_000,
        "trainer_args": '{"dataset_file":"gs://b/d","output_dir":"/o","trainer_args":{"seed":' + deep + "}}",
        "env": '{"dataset_file":"gs://b/d","output_dir":"/o","env":{"A":' + deep + "}}",
    }[shape]
    stack.rejected(stack.post(body.encode()), "body")


def test_66_deep_nesting_is_400(stack: Stack) -> None:
    stack.rejected(stack.post(json.dumps(k8s(trainer_args={"seed": json.loads("[" * 64 + "]" * 64)}))), "body")


# ---- unicode -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,model",
    [
        ("微调-任务 🚀", "org/模型-7B"),
        ("Ünïcödé ñame — ok", "méta/Llama-3.2-3B-Instruct"),
        ("עברית RTL\u200f", "أنثروبيك/نموذج"),
        ("e\u0301 combining", "z\u0308/\U0001f9ea"),
    ],
    ids=["cjk-emoji", "latin", "rtl", "combining"],
)
def test_unicode_job_name_and_model_id_round_trip(stack: Stack, name: str, model: str) -> None:
    job = stack.accepted(stack.post(json.dumps(k8s(job_name=name, model_id=model), ensure_ascii=False).encode()))
    assert job["name"] == name and job["modelId"] == model
    assert f"--model_id={model}" in job["args"]
    got = requests.get(f"{stack.url}/jobs/{job['id']}").json()["job"]
    assert got["name"] == name and got["modelId"] == model
    listed = requests.get(f"{stack.url}/jobs", params={"name": name}).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    stored = stack.container.store.get(job["id"])
    assert stored.name == name and stored.model_id == model


# ---- local paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["dataset_file", "output_dir"])
@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "{root}/../outside/x", "{root}/a/../../outside", "{root}/./../../", "../../../../etc", "{root}x/sibling", "/"],
    ids=["absolute", "dotdot", "dotdot-nested", "dot-dotdot", "relative-escape", "prefix-sibling", "slash"],
)
def test_local_path_outside_the_allowed_roots_is_400(stack: Stack, field: str, path: str) -> None:
    stack.rejected(stack.post(local(stack, **{field: path.format(root=stack.root)})), field)


@pytest.mark.parametrize("field", ["dataset_file", "output_dir"])
def test_local_path_through_a_symlink_leaving_the_root_is_400(stack: Stack, field: str) -> None:
    (stack.root / "escape").symlink_to(stack.outside, target_is_directory=True)
    stack.rejected(stack.post(local(stack, **{field: str(stack.root / "escape" / "x")})), field)


def test_local_path_through_a_symlinked_file_leaving_the_root_is_400(stack: Stack) -> None:
    (stack.outside / "secret.jsonl").write_text("{}\n")
    (stack.root / "data.jsonl").symlink_to(stack.outside / "secret.jsonl")
    stack.rejected(stack.post(local(stack, dataset_file=str(stack.root / "data.jsonl"))), "dataset_file")


def test_local_path_through_a_symlink_inside_the_root_is_accepted(stack: Stack) -> None:
    (stack.root / "real").mkdir()
    (stack.root / "alias").symlink_to(stack.root / "real", target_is_directory=True)
    job = stack.accepted(stack.post(local(stack, output_dir=str(stack.root / "alias" / "out"))))
    # The trainer gets the resolved path: a link swapped later can't redirect it.
    assert job["outputDir"] == str(stack.root / "real" / "out")
    assert f"--output_dir={stack.root / 'real' / 'out'}" in job["args"]


def test_local_paths_inside_the_root_are_accepted(stack: Stack) -> None:
    job = stack.accepted(stack.post(local(stack, output_dir=str(stack.root / "a" / ".." / "out"))))
    assert job["outputDir"] == str(stack.root / "out") and job["datasetFile"] == str(stack.root / "d.jsonl")


# ---- env names that change how the child runs ----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "PYTHONPATH",
        "LD_PRELOAD",
        "PYTHONSTARTUP",
        "BASH_ENV",
        "ENV",
        "PYTHONHOME",
        "LD_LIBRARY_PATH",
        "DYLD_INSERT_LIBRARIES",
        "PYTHONWARNINGS",
        "HOME",
        "TRAINING_PLATFORM_X",
        "path",
        "ld_preload",
        "PythonPath",
        "bash_env",
    ],
)
def test_env_name_that_changes_how_the_child_runs_is_400(stack: Stack, name: str) -> None:
    body = stack.rejected(stack.post(k8s(env={name: "/tmp/evil"})), f"env.{name}")
    assert "change how the trainer" in body["errors"][0]["message"]


def test_forbidden_env_name_is_refused_on_the_local_backend_too(stack: Stack) -> None:
    stack.rejected(stack.post(local(stack, env={"LD_PRELOAD": str(stack.root / "x.so")})), "env.LD_PRELOAD")


# ---- image and command are not the caller's to choose -------------------------------------------

CHOOSERS = ["image", "command", "entrypoint", "container", "args", "image_uri", "python_bin", "train_script_path", "containers", "cmd"]


@pytest.mark.parametrize("key", CHOOSERS)
def test_top_level_image_or_command_key_is_400_unknown_flag(stack: Stack, key: str) -> None:
    body = stack.rejected(stack.post(k8s(**{key: "evil/img:latest"})), key)
    assert "unknown trainer flag" in body["errors"][0]["message"]


@pytest.mark.parametrize("key", CHOOSERS)
def test_trainer_args_image_or_command_key_is_400_unknown_flag(stack: Stack, key: str) -> None:
    body = stack.rejected(stack.post(k8s(trainer_args={key: ["sh", "-c", "id"]})), f"trainer_args.{key}")
    assert "unknown trainer flag" in body["errors"][0]["message"] or "not a valid" in body["errors"][0]["message"]


@pytest.mark.parametrize("name", ["K8S_TRAINING_IMAGE", "VERTEX_IMAGE_URI", "TRAIN_SCRIPT_PATH"])
def test_env_naming_a_setting_does_not_choose_the_image_or_command(stack: Stack, name: str) -> None:
    """Settings are read from the server's environment once, never from a job's env: such a name is just
    a secret variable of the child (accepted, redacted), and the job's command is still the trainer's."""
    job = stack.accepted(stack.post(k8s(env={name: "evil"})))
    stored = stack.container.store.get(job["id"])
    assert stored.command.startswith("train.py ") and "evil" not in stored.command
    assert "evil" not in json.dumps(job)


def test_accepted_job_command_and_args_hold_only_trainer_flags(stack: Stack) -> None:
    from trainer import flags as trainer_flags

    job = stack.accepted(stack.post(k8s(model="m", trainer_args={"seed": 3, "lora_target_modules": ["q_proj", "v_proj"]}, packing=True)))
    stored = stack.container.store.get(job["id"])
    assert stored.command.split()[0] == "train.py"
    for arg in stored.args:
        name = arg[2:].split("=", 1)[0]
        assert arg.startswith("--") and (name in trainer_flags.BY_NAME or name.removeprefix("no_") in trainer_flags.BY_NAME), arg
    for word in ("image", "entrypoint", "container", "command"):
        assert word not in json.dumps(stored.args)
    assert stored.manifest is None  # rendered by the launcher only, from settings


# ---- the cheap end: a fixed-up request after all these is still fine ------------------------------


def test_a_good_request_after_rejections_is_the_only_job(stack: Stack) -> None:
    for bad in (k8s(env={"PATH": "/x"}), k8s(image="x"), b"[" * 10_000, k8s(job_name="a\nb")):
        assert stack.post(bad).status_code == 400
    job = stack.accepted(stack.post(k8s(job_name="fine")))
    assert [j.id for j in stack.jobs()] == [job["id"]]
    assert [m[1]["job_id"] for m in stack.bus.messages] == [job["id"]]


@pytest.mark.parametrize("path", ["/jobs/x%0A", "/jobs/x%0A/manifest", "/jobs/.a%3B%0A%E5%9C%9B/metrics", "/%0A"])
def test_a_path_the_http_router_cannot_match_is_a_json_404(stack: Stack, path: str) -> None:
    """functions-framework's router can't match a path holding a newline and answered with werkzeug's HTML
    404 before the api ran (schemathesis found it on /jobs/{id}/manifest)."""
    r = requests.get(f"{stack.url}{path}", timeout=10)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json"), r.text[:200]
    assert isinstance(r.json()["error"], str) and r.json()["error"]
