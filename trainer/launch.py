"""The trainer's entry point for images and the local backend: `train.py` under torch's elastic launcher.

    python -m trainer.launch [--nproc_per_node N] [--nnodes N --node_rank R --master_addr A --master_port P] \
        [--] <train.py flags>
    python trainer/launch.py ...            (the same; the repo root is put on sys.path)

It starts one `train.py` process per local device (torchrun: `torch.distributed.run`, called in this
process, so this process is the elastic agent and the workers' parent). Where the process count and the
rendezvous come from, first match wins, each value on its own:
1. this module's flags;
2. the `PET_*` environment torchrun itself reads and our Kubernetes manifests set (`PET_NNODES`,
   `PET_NPROC_PER_NODE`, `PET_NODE_RANK` from the completion index, `PET_MASTER_ADDR`, `PET_MASTER_PORT`);
3. or else (never mixed with PET_*) Vertex's node-level `WORLD_SIZE` (nodes), `RANK` (this node),
   `MASTER_ADDR`, `MASTER_PORT` (Vertex sets them per replica; torchrun's per-process values replace them
   in each worker);
4. one node, one process per CUDA device, or one CPU process without CUDA.
One node without a master address is a `--standalone` rendezvous on a free port (the local backend, a
one-node pod); otherwise the static rendezvous at `master_addr:master_port` with this node's rank.
Without CUDA the workers train on CPU over gloo (`train.py` picks the backend), which is how the
distributed path is tested on machines without a GPU.

Exit code: the trainer's own (0, 2 bad input, 1 runtime, 143 preempted) — the first failing rank's, a
signal N as 128 + N. SIGTERM reaches every rank: the agent forwards it to each worker, each rank saves
its part of the checkpoint at the same step (`train.py` agrees on the step across ranks), and this
process exits 143. Should this process be killed outright, the workers die with it (`train.py` asks the
kernel for that: the workers run in sessions of their own, so a signal to this process group alone would
not reach them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `trainer.*` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EXIT_PREEMPTED = 143
TRAIN_SCRIPT = Path(__file__).resolve().with_name("train.py")
# The agent's pid, read by each worker to die with its agent (see `train.die_with_launcher`).
LAUNCHER_PID_ENV = "TRAINER_LAUNCHER_PID"
# Vertex's node-level variables: consumed here, never passed to a worker as if they were per process.
VERTEX_ENV = ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Topology:
    nnodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str | None
    master_port: int | None
    source: str  # where the rendezvous came from: flags, pet, vertex, local

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def standalone(self) -> bool:
        return self.nnodes == 1 and not self.master_addr


class LaunchError(ValueError):
    """The process count or the rendezvous cannot be worked out from the flags and the environment."""


def _int(name: str, value: str | int | None, minimum: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LaunchError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise LaunchError(f"{name} must be at least {minimum}, got {number}")
    return number


def under_elastic_agent(env: Mapping[str, str]) -> bool:
    """The environment of a torchrun worker: its WORLD_SIZE / RANK are per process, not Vertex's."""
    return "TORCHELASTIC_RUN_ID" in env or "LOCAL_RANK" in env


def resolve(opts: argparse.Namespace, env: Mapping[str, str], cuda_devices: int) -> Topology:
    """The topology this node runs: flags over PET_* over Vertex's node-level variables over defaults."""
    # One environment or the other, never a mixture: PET_* (ours, Kubernetes) when any is set, else
    # Vertex's node-level variables (ignored inside a worker, where they are torchrun's per-process ones).
    pet_keys = {
        "nnodes": "PET_NNODES",
        "nproc_per_node": "PET_NPROC_PER_NODE",
        "node_rank": "PET_NODE_RANK",
        "master_addr": "PET_MASTER_ADDR",
        "master_port": "PET_MASTER_PORT",
    }
    vertex_keys = {"nnodes": "WORLD_SIZE", "node_rank": "RANK", "master_addr": "MASTER_ADDR", "master_port": "MASTER_PORT"}
    if any(env.get(k) for k in pet_keys.values()):
        env_source, keys = "pet", pet_keys
    elif env.get("WORLD_SIZE") and not under_elastic_agent(env):
        env_source, keys = "vertex", vertex_keys
    else:
        env_source, keys = None, {}

    def pick(flag: str) -> tuple[str | None, str | None]:
        value = getattr(opts, flag)
        if value not in (None, ""):
            return str(value), "flags"
        value = env.get(keys[flag]) if flag in keys else None
        if value not in (None, ""):
            return str(value), env_source
        return None, None

    nnodes_raw, nnodes_src = pick("nnodes")
    nproc_raw, nproc_src = pick("nproc_per_node")
    rank_raw, _ = pick("node_rank")
    addr, addr_src = pick("master_addr")
    port_raw, _ = pick("master_port")

    nnodes = _int("nnodes", nnodes_raw, 1) or 1
    nproc = _int("nproc_per_node", nproc_raw, 1) or max(cuda_devices, 1)
    node_rank = _int("node_rank", rank_raw, 0) or 0
    port = _int("master_port", port_raw, 1)
    if cuda_devices and nproc > cuda_devices:
        raise LaunchError(f"{nproc} processes per node asked for, but this machine has {cuda_devices} CUDA device(s): one process per GPU")
    if node_rank >= nnodes:
        raise LaunchError(f"node_rank {node_rank} is outside the {nnodes} node(s)")
    if nnodes > 1 and not (addr and port):
        raise LaunchError(
            f"{nnodes} nodes need a master address and port (--master_addr/--master_port, PET_MASTER_ADDR/PET_MASTER_PORT or MASTER_ADDR/MASTER_PORT)"
        )
    if addr and port is None:
        port = 29500  # torchrun's own default
    source = nnodes_src or addr_src or nproc_src or "local"
    return Topology(nnodes=nnodes, nproc_per_node=nproc, node_rank=node_rank, master_addr=addr, master_port=port, source=source)


def torchrun_argv(topology: Topology, script: str, trainer_args: Sequence[str]) -> list[str]:
    """`torch.distributed.run`'s arguments for this topology."""
    argv = ["--nproc_per_node", str(topology.nproc_per_node)]
    if topology.standalone:
        argv = ["--standalone", "--nnodes", "1", *argv]
    else:
        argv = [
            "--nnodes",
            str(topology.nnodes),
            "--node_rank",
            str(topology.node_rank),
            "--master_addr",
            str(topology.master_addr),
            "--master_port",
            str(topology.master_port),
            *argv,
        ]
    # Our own launcher decides the topology: torchrun must not take PET_* values over what we pass it.
    return [*argv, "--max_restarts", "0", "--monitor_interval", "0.5", script, *trainer_args]


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(launcher flags, trainer flags): everything after the first `--` is the trainer's; without one,
    the launcher's flags are picked out wherever they are and the rest goes to the trainer."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    ours, rest = [], []
    names = {f"--{n}" for n in LAUNCH_FLAGS} | {f"--{n.replace('_', '-')}" for n in LAUNCH_FLAGS}
    i = 0
    while i < len(argv):
        item = argv[i]
        name = item.split("=", 1)[0]
        if name in names:
            ours.append(item)
            if "=" not in item and i + 1 < len(argv):
                ours.append(argv[i + 1])
                i += 1
        else:
            rest.append(item)
        i += 1
    return ours, rest


LAUNCH_FLAGS = ("nnodes", "nproc_per_node", "node_rank", "master_addr", "master_port", "script")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.launch", allow_abbrev=False, description="Run train.py under torch's elastic launcher (every other flag goes to train.py)."
    )
    parser.add_argument("--nnodes", default=None, help="nodes in the job (PET_NNODES, WORLD_SIZE)")
    parser.add_argument(
        "--nproc_per_node", "--nproc-per-node", default=None, help="trainer processes on this node (PET_NPROC_PER_NODE; default: one per CUDA device, else 1)"
    )
    parser.add_argument("--node_rank", "--node-rank", default=None, help="this node's rank (PET_NODE_RANK, RANK)")
    parser.add_argument("--master_addr", "--master-addr", default=None, help="rank 0's host (PET_MASTER_ADDR, MASTER_ADDR)")
    parser.add_argument("--master_port", "--master-port", default=None, help="rank 0's port (PET_MASTER_PORT, MASTER_PORT)")
    parser.add_argument("--script", default=str(TRAIN_SCRIPT), help="the trainer script (default: train.py beside this file)")
    return parser


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def exit_code(exc: BaseException) -> int:
    """The exit code of a failed launch: the first failing rank's own code (a signal as 128 + N)."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if isinstance(exc, SignalException):
        return 128 + int(exc.sigval)
    if isinstance(exc, ChildFailedError):
        _, first = exc.get_first_failure()
        code = int(first.exitcode)
        return 128 - code if code < 0 else (code or 1)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    ours, trainer_args = split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    opts = parser.parse_args(ours)
    # First of all: the job's secrets on Vertex arrive as Secret Manager references; the workers inherit
    # this environment, so they see the values (and never the references).
    from trainer import job_secrets

    try:
        job_secrets.resolve(os.environ)
    except job_secrets.SecretError as e:
        print(f"launch: {e}", file=sys.stderr, flush=True)
        return 1
    try:
        topology = resolve(opts, os.environ, cuda_device_count())
    except LaunchError as e:
        parser.error(str(e))  # exit 2, like a bad trainer flag
    for key in VERTEX_ENV:
        if not under_elastic_agent(os.environ):
            os.environ.pop(key, None)  # node-level values must not reach a worker as per-process ones
    for key in [k for k in os.environ if k.startswith("PET_")]:
        os.environ.pop(key)  # resolved above; torchrun would otherwise read them over our arguments
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # PROGRESS lines reach the log tail at once
    print(
        f"launch: {topology.nnodes} node(s) x {topology.nproc_per_node} process(es), node {topology.node_rank} "
        f"({topology.source}), {'standalone' if topology.standalone else f'{topology.master_addr}:{topology.master_port}'}",
        file=sys.stderr,
        flush=True,
    )

    from torch.distributed import run as torchrun

    try:
        torchrun.main(torchrun_argv(topology, opts.script, trainer_args))
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - ChildFailedError / SignalException carry the exit code
        if isinstance(e, KeyboardInterrupt):
            return 130
        code = exit_code(e)
        print(f"launch: exiting {code} ({type(e).__name__})", file=sys.stderr, flush=True)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
