"""The trainer under its distributed launcher (`python -m trainer.launch`), on CPU over gloo, with the
tiny model: two ranks train what one process trains with the same global batch, rank 0 alone reports
and saves, two "nodes" meet through the PET_* environment, SIGTERM stops every rank at one step, a LoRA
run resumes on another world size, and `--method full` asks for FSDP (which accelerate applies on GPUs).

Tolerance: without LoRA dropout (whose masks come from each rank's own RNG), the losses of two ranks
(per-device batch 2) and of one process (batch 4) differ only by float summation order (padding to
another length, the all-reduce): measured 1.4e-7 relative after 6 steps at lr 1e-2, the adapters 6e-6
(norm of the difference over the norm, per tensor). The tests allow 1e-4 and 1e-3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from trainer_testlib import FAST, REPO_ROOT, Run, free_port, trainer_env

pytestmark = [pytest.mark.trainer]

LOSS_REL = 1e-4
ADAPTER_REL = 1e-3
STEPS = 6


def launch_env(**extra: str) -> dict[str, str]:
    env = trainer_env(**extra)
    for key in [k for k in env if k.startswith("PET_") or k in ("WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")]:
        if key not in extra:
            env.pop(key)
    env["OMP_NUM_THREADS"] = "1"
    return env


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainer.launch", *map(str, argv)],
        cwd=REPO_ROOT,
        env=env or launch_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> Run:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Run(proc.returncode, out, err)


def common(tiny_model, chat_file, per_device: int) -> list[str]:
    return [
        "--model_id",
        str(tiny_model),
        "--dataset_file",
        str(chat_file),
        *FAST,
        "--lora_dropout",
        "0",
        "--per_device_train_batch_size",
        str(per_device),
        "--max_steps",
        str(STEPS),
    ]


def summary(out: Path) -> dict:
    return json.loads((out / "run_summary.json").read_text())


def assert_one_report_per_step(run: Run, steps: int) -> None:
    assert [e["step"] for e in run.of("step")] == list(range(1, steps + 1)), run.stdout
    assert len(run.of("started")) == 1 and len(run.of("done")) == 1 and len(run.of("dataset")) == 1


@pytest.fixture(scope="module")
def one_process(tiny_model, chat_file, tmp_path_factory):
    """The reference: one process, per-device batch 4 (the global batch of two ranks of 2), in-process
    (module-scoped, so not through the function-scoped capsys of `train_inproc`)."""
    import contextlib
    import io

    from trainer import train

    out = tmp_path_factory.mktemp("one") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = train.main([*common(tiny_model, chat_file, 4), "--output_dir", str(out)])
    assert code == 0
    return out, Run(code, buf.getvalue(), "")


@pytest.mark.slow
def test_two_ranks_train_like_one_process_and_rank_zero_alone_reports_and_saves(tiny_model, chat_file, tmp_path, one_process):
    from safetensors.torch import load_file

    ref_out, ref = one_process
    out = tmp_path / "out"
    run = finish(start(["--nproc_per_node", "2", "--", *common(tiny_model, chat_file, 2), "--output_dir", out]))
    assert run.code == 0, run.stderr[-3000:]
    assert_one_report_per_step(run, STEPS)
    assert len(run.of("checkpoint")) == 1  # the final step's checkpoint, reported once
    assert run.losses == pytest.approx(ref.losses, rel=LOSS_REL), (run.losses, ref.losses)
    s = summary(out)
    assert s["world_size"] == 2 and s["nodes"] == 1 and s["parallelism"] == "ddp"
    assert s["global_batch_size"] == 4 == summary(ref_out)["global_batch_size"]
    assert summary(ref_out)["world_size"] == 1 and summary(ref_out)["parallelism"] is None
    assert s["tokens"] == summary(ref_out)["tokens"]  # both ranks' tokens, counted across ranks
    # One adapter, and it is the one a single process trains (up to the same rounding).
    assert sorted(p.name for p in out.glob("adapter_model*")) == ["adapter_model.safetensors"]
    ckpt = out / f"checkpoint-{STEPS}"
    assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= {p.name for p in ckpt.iterdir()}
    a, b = load_file(ref_out / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()

    worst = max(float((b[k] - a[k]).norm() / a[k].norm().clamp_min(1e-12)) for k in a)
    assert worst < ADAPTER_REL, worst
    # The preflight's account is printed by rank 0 only.
    assert run.stderr.count("dataset: 12 rows") == 1


@pytest.mark.slow
def test_two_nodes_of_one_process_meet_through_the_pet_environment(tiny_model, chat_file, tmp_path, one_process):
    _, ref = one_process
    port = str(free_port())
    procs, outs = [], []
    for node in (0, 1):
        out = tmp_path / f"node{node}"  # each "node" has a disk of its own
        outs.append(out)
        env = launch_env(PET_NNODES="2", PET_NPROC_PER_NODE="1", PET_NODE_RANK=str(node), PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=port)
        procs.append(start([*common(tiny_model, chat_file, 2), "--output_dir", out], env=env))
    runs = [finish(p) for p in procs]
    for run in runs:
        assert run.code == 0, run.stderr[-3000:]
    assert "2 node(s) x 1 process(es), node 1 (pet)" in runs[1].stderr
    assert_one_report_per_step(runs[0], STEPS)
    assert runs[1].events == []  # rank 1 prints no PROGRESS
    assert runs[0].losses == pytest.approx(ref.losses, rel=LOSS_REL)
    s = summary(outs[0])
    assert s["world_size"] == 2 and s["nodes"] == 2 and s["global_batch_size"] == 4
    assert (outs[0] / "adapter_model.safetensors").is_file()
    assert not (outs[1] / "run_summary.json").exists() and not (outs[1] / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_sigterm_stops_every_rank_at_one_step_and_lora_resumes_on_one_process(tiny_model, chat_file, tmp_path, train_inproc):
    steps = 40
    args = [*common(tiny_model, chat_file, 2), "--max_steps", str(steps), "--save_steps", "1000"]
    out = tmp_path / "out"
    proc = start(["--nproc_per_node", "2", "--", *args, "--output_dir", out])
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            event = json.loads(line[9:]) if line.startswith("PROGRESS ") else {}
            if event.get("event") == "step" and event["step"] >= 3:
                os.killpg(proc.pid, signal.SIGTERM)  # what the supervisor does: the launcher's group only
                break
        killed = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed = Run(killed.code, "".join(lines) + killed.stdout, killed.stderr)
    assert killed.code == 143, killed.stderr[-3000:]
    assert killed.stderr.count("SIGTERM: checkpoint-") == 2  # both ranks stopped, and said so
    (ckpt_event,) = killed.of("checkpoint")
    stopped = ckpt_event["step"]
    assert 3 <= stopped < steps
    ckpt = out / f"checkpoint-{stopped}"
    # Complete: every rank's part and the state the resume reads; no other checkpoint.
    assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json", "optimizer.pt", "adapter_model.safetensors"} <= {p.name for p in ckpt.iterdir()}
    assert [p.name for p in out.glob("checkpoint-*")] == [ckpt.name]
    assert not (out / "run_summary.json").exists() and not killed.of("done")

    # Resume the two-rank checkpoint on one process: per-device batch 4 keeps the global batch.
    resumed = train_inproc(*args, "--per_device_train_batch_size", "4", "--output_dir", out, "--resume_from_checkpoint", "auto")
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert resumed.of("started")[0]["step"] == stopped
    s = summary(out)
    assert s["resumed_from"] == str(ckpt) and s["steps"] == steps and s["world_size"] == 1


@pytest.mark.slow
def test_qlora_trains_data_parallel_on_a_vertex_node(tiny_model, chat_file, tmp_path, train_inproc):
    """QLoRA on two ranks, each with its own 4-bit model; the rendezvous from the node-level variables
    Vertex sets (one node here, so WORLD_SIZE=1 and RANK=0), which the workers never see as theirs."""
    args = [*common(tiny_model, chat_file, 2), "--method", "qlora", "--max_steps", "3"]
    ref = train_inproc(*args, "--per_device_train_batch_size", "4", "--output_dir", tmp_path / "ref")
    assert ref.code == 0, ref.stderr[-3000:]
    out = tmp_path / "out"
    env = launch_env(WORLD_SIZE="1", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    run = finish(start(["--nproc_per_node", "2", "--", *args, "--output_dir", out], env=env))
    assert run.code == 0, run.stderr[-3000:]
    assert "1 node(s) x 2 process(es), node 0 (vertex), 127.0.0.1:" in run.stderr
    assert_one_report_per_step(run, 3)
    assert run.losses == pytest.approx(ref.losses, rel=LOSS_REL)
    s = summary(out)
    assert s["loaded_in_4bit"] is True and s["world_size"] == 2 and s["parallelism"] == "ddp"
    assert (out / "adapter_model.safetensors").is_file()


def ranks_of(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (a unique output folder: the launcher and each rank)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and marker in (entry / "cmdline").read_bytes().decode(errors="replace")
                and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_the_ranks_die_with_a_launcher_killed_outright(tiny_model, chat_file, tmp_path):
    """torchrun starts each rank in a session of its own: a SIGKILL to the launcher's group (a supervisor
    whose grace ran out, the OOM killer) would leave them running but for PR_SET_PDEATHSIG."""
    import time

    out = tmp_path / "out-kill"
    proc = start(["--nproc_per_node", "2", "--", *common(tiny_model, chat_file, 2), "--max_steps", "100000", "--save_steps", "100000", "--output_dir", out])
    try:
        for line in proc.stdout:
            if line.startswith("PROGRESS ") and json.loads(line[9:]).get("event") == "step":
                break
        assert len(ranks_of(str(out))) == 3  # the launcher and two ranks
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while ranks_of(str(out)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ranks_of(str(out)) == []
    finally:
        for pid in ranks_of(str(out)):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_full_fine_tuning_on_several_ranks_asks_for_fsdp_full_shard_per_decoder_layer(tmp_path):
    """What the Trainer is given for `--method full` on two ranks. Accelerate shards with FSDP on GPUs
    only (on CPU it keeps DDP, and run_summary.json says `ddp`, from what the Trainer actually did), so
    the sharded run itself is part of tests/bench/gpu_check.sh; here, the plugin the arguments make."""
    from trainer import flags
    from trainer.train import Machine, World, parallel_options, sft_config

    args = flags.parse_args(["--dataset_file", "x.jsonl", "--output_dir", str(tmp_path), "--method", "full"])
    gpu = Machine(cuda=True, bf16=True, bitsandbytes=True)
    two = World(rank=0, local_rank=0, size=2, local_size=2)
    options = parallel_options(args, gpu, two, ["LlamaDecoderLayer"])
    assert options["fsdp"] is True and options["ddp_backend"] == "nccl"
    assert options["activation_checkpointing"] is False  # FSDP's own checkpointing instead
    cpu = Machine(cuda=False, bf16=False, bitsandbytes=False)
    # (without ddp_backend: naming one makes TrainingArguments join a process group)
    config = sft_config(args, cpu, has_eval=False, parallel={k: v for k, v in options.items() if k != "ddp_backend"})
    plugin = config.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["reshard_after_forward"] is True  # full shard
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert plugin["activation_checkpointing"] is True and plugin["state_dict_type"] == "FULL_STATE_DICT"
    # LoRA / QLoRA: plain data parallel; one process: nothing at all.
    lora = flags.parse_args(["--dataset_file", "x.jsonl", "--method", "lora"])
    assert "fsdp" not in parallel_options(lora, gpu, two, ["LlamaDecoderLayer"])
    assert parallel_options(args, gpu, World(), ["LlamaDecoderLayer"]) == {}


# ---- the launcher's topology, without processes -----------------------------------------------------


def opts(**values) -> Namespace:
    base = {"nnodes": None, "nproc_per_node": None, "node_rank": None, "master_addr": None, "master_port": None}
    return Namespace(**{**base, **values})


@pytest.mark.parametrize(
    "name, flags, env, cuda, expected",
    [
        ("alone on CPU", {}, {}, 0, (1, 1, 0, None, None, "local")),
        ("one per CUDA device", {}, {}, 4, (1, 4, 0, None, None, "local")),
        ("flags", {"nproc_per_node": "2"}, {"PET_NPROC_PER_NODE": "8"}, 0, (1, 2, 0, None, None, "flags")),
        ("PET_NPROC_PER_NODE alone", {}, {"PET_NPROC_PER_NODE": "8"}, 0, (1, 8, 0, None, None, "pet")),
        (
            "kubernetes PET_*",
            {},
            {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "8", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "job-0.job", "PET_MASTER_PORT": "29400"},
            8,
            (2, 8, 1, "job-0.job", 29400, "pet"),
        ),
        (
            "vertex node-level",
            {},
            {"WORLD_SIZE": "3", "RANK": "2", "MASTER_ADDR": "workerpool0-0", "MASTER_PORT": "3333"},
            4,
            (3, 4, 2, "workerpool0-0", 3333, "vertex"),
        ),
        ("PET_* over vertex", {}, {"WORLD_SIZE": "3", "RANK": "2", "PET_NNODES": "1", "MASTER_ADDR": "m", "MASTER_PORT": "1"}, 0, (1, 1, 0, None, None, "pet")),
        ("inside a worker: WORLD_SIZE is per process", {}, {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, 0, (1, 1, 0, None, None, "local")),
        ("a master address alone: torchrun's port", {"master_addr": "h"}, {}, 0, (1, 1, 0, "h", 29500, "flags")),
    ],
)
def test_launcher_topology(name, flags, env, cuda, expected):
    from trainer.launch import resolve

    t = resolve(opts(**flags), env, cuda)
    assert (t.nnodes, t.nproc_per_node, t.node_rank, t.master_addr, t.master_port, t.source) == expected, name


@pytest.mark.parametrize(
    "flags, env, message",
    [
        ({"nnodes": "2"}, {}, "need a master address"),
        ({}, {"PET_NNODES": "2", "PET_NODE_RANK": "2", "PET_MASTER_ADDR": "a", "PET_MASTER_PORT": "1"}, "outside"),
        ({"nproc_per_node": "0"}, {}, "at least 1"),
        ({}, {"PET_NPROC_PER_NODE": "two"}, "must be an integer"),
        ({"nproc_per_node": "4"}, {}, "has 2 CUDA device"),
    ],
)
def test_launcher_refuses_a_topology_it_cannot_run(flags, env, message):
    from trainer.launch import LaunchError, resolve

    with pytest.raises(LaunchError, match=message):
        resolve(opts(**flags), env, 2 if "CUDA" in message else 0)


def test_torchrun_arguments_standalone_and_static():
    from trainer.launch import Topology, split_argv, torchrun_argv

    alone = torchrun_argv(Topology(1, 2, 0, None, None, "flags"), "train.py", ["--method", "lora"])
    assert alone[:5] == ["--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    assert alone[-3:] == ["train.py", "--method", "lora"]
    static = torchrun_argv(Topology(2, 8, 1, "job-0.job", 29400, "pet"), "train.py", [])
    assert "--standalone" not in static
    assert static[:8] == ["--nnodes", "2", "--node_rank", "1", "--master_addr", "job-0.job", "--master_port", "29400"]
    # Launcher flags are picked out with or without `--`; everything else is the trainer's.
    assert split_argv(["--nproc_per_node", "2", "--", "--method", "lora"]) == (["--nproc_per_node", "2"], ["--method", "lora"])
    assert split_argv(["--method", "lora", "--nproc-per-node=2", "--max_steps", "3"]) == (["--nproc-per-node=2"], ["--method", "lora", "--max_steps", "3"])


def test_world_comes_from_the_elastic_agent_only():
    from trainer.train import World

    assert World.from_env({"WORLD_SIZE": "4", "RANK": "3"}) == World()  # Vertex's node-level values, alone
    w = World.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (w.rank, w.local_rank, w.size, w.nodes, w.is_main, w.distributed) == (3, 1, 4, 2, False, True)


def test_a_remote_checkpoint_is_downloaded_into_place_once_by_ranks_at_the_same_time(tmp_path, monkeypatch):
    """Every rank of a node resolves the same remote checkpoint at once: each downloads into a folder
    of its own and renames it into place, so none reads a folder another is still writing, and a stale
    incomplete folder of an earlier attempt is replaced. (The bucket is stood in for by a local copy.)"""
    import shutil
    import threading

    from trainer import storage, train

    source = tmp_path / "bucket" / "checkpoint-7"
    source.mkdir(parents=True)
    (source / "adapter_model.safetensors").write_bytes(b"w" * 1000)
    (source / "trainer_state.json").write_text("{}")
    barrier = threading.Barrier(4)

    def download(uri, dest, **kw):
        barrier.wait(5)  # all four "ranks" download at the same moment
        shutil.copytree(source, dest, dirs_exist_ok=True)
        return 2

    monkeypatch.setattr(storage, "download_dir", download)
    local = tmp_path / "out" / "checkpoint-7"
    local.mkdir(parents=True)
    (local / "adapter_model.safetensors").write_bytes(b"half")  # an earlier attempt died mid-download
    errors = []

    def rank():
        try:
            train.download_checkpoint("gs://bucket/checkpoint-7", local)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=rank) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert sorted(p.name for p in local.parent.iterdir()) == ["checkpoint-7"]  # no partial or stale folder left
    assert (local / "adapter_model.safetensors").read_bytes() == b"w" * 1000 and (local / "trainer_state.json").is_file()
