"""Per-job resources: the request's reserved `resources` key, checked, and what each backend can place.

Pure. `parse_resources` turns the request's `resources` object into a `Resources` (every field optional:
an unset one falls back to the deployment's settings, which stay the defaults) or records a `FieldError`
naming `resources.<key>`. A `Placement` says what one backend can place — which GPU types, in which
counts per node, how many nodes — and `placement_problems` turns a combination it can't place into
errors that name the fields and list what exists. Each backend's placement is built from its own table
here (`k8s_placement` from `K8S_GPU_NODE_SELECTORS`, `vertex_placement` from the Vertex machine table,
`LOCAL_PLACEMENT`), the same tables its adapter renders from, so what the api accepts is what the
launcher can submit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.json_types import type_name as _type_name
from shared.errors import FieldError

MAX_GPUS = 16  # per node
MAX_NODES = 64
MAX_CPUS = 1024
MAX_MEMORY_GB = 16384
# Vertex's longest `scheduling.timeout` is 7 days... Kubernetes has no limit; 30 days catches typos (minutes vs seconds).
MAX_DURATION_MINUTES = 30 * 24 * 60
KEYS = ("gpus", "gpu_type", "nodes", "cpus", "memory_gb", "max_duration_minutes")

# The GPU types every deployment knows; settings (K8S_GPU_NODE_SELECTORS, VERTEX_MACHINE_TYPES) add more.
GPU_TYPES = ("L4", "A100", "A100-80GB", "H100", "H200", "B200")

# GKE's accelerator label for each type (`cloud.google.com/gke-accelerator`): K8S_GPU_NODE_SELECTORS' default.
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
DEFAULT_K8S_GPU_NODE_SELECTORS: dict[str, dict[str, str]] = {
    "L4": {GKE_ACCELERATOR_LABEL: "nvidia-l4"},
    "A100": {GKE_ACCELERATOR_LABEL: "nvidia-tesla-a100"},
    "A100-80GB": {GKE_ACCELERATOR_LABEL: "nvidia-a100-80gb"},
    "H100": {GKE_ACCELERATOR_LABEL: "nvidia-h100-80gb"},
    "H200": {GKE_ACCELERATOR_LABEL: "nvidia-h200-141gb"},
    "B200": {GKE_ACCELERATOR_LABEL: "nvidia-b200"},
}

# Vertex AI: GPU type -> accelerator enum and the machine type for each GPU count per node (Google's
# "Configure compute resources for custom training" / GPU machine-type pages). VERTEX_MACHINE_TYPES
# replaces or adds types.
DEFAULT_VERTEX_MACHINE_TYPES: dict[str, dict[str, Any]] = {
    "L4": {"accelerator": "NVIDIA_L4", "machines": {"1": "g2-standard-8", "2": "g2-standard-24", "4": "g2-standard-48", "8": "g2-standard-96"}},
    "A100": {
        "accelerator": "NVIDIA_TESLA_A100",
        "machines": {"1": "a2-highgpu-1g", "2": "a2-highgpu-2g", "4": "a2-highgpu-4g", "8": "a2-highgpu-8g", "16": "a2-megagpu-16g"},
    },
    "A100-80GB": {
        "accelerator": "NVIDIA_A100_80GB",
        "machines": {"1": "a2-ultragpu-1g", "2": "a2-ultragpu-2g", "4": "a2-ultragpu-4g", "8": "a2-ultragpu-8g"},
    },
    "H100": {
        "accelerator": "NVIDIA_H100_80GB",
        "machines": {"1": "a3-highgpu-1g", "2": "a3-highgpu-2g", "4": "a3-highgpu-4g", "8": "a3-highgpu-8g"},
    },
    "H200": {"accelerator": "NVIDIA_H200_141GB", "machines": {"8": "a3-ultragpu-8g"}},
    "B200": {"accelerator": "NVIDIA_B200", "machines": {"8": "a4-highgpu-8g"}},
}


@dataclass(frozen=True)
class Resources:
    """What a job asked for; None = the deployment's default (its settings)."""

    gpus: int | None = None  # per node
    gpu_type: str | None = None  # canonical spelling (`H100`, `A100-80GB`)
    nodes: int | None = None
    cpus: float | None = None  # per node
    memory_gb: float | None = None  # per node
    max_duration_minutes: int | None = None

    @property
    def node_count(self) -> int:
        return self.nodes or 1

    def is_empty(self) -> bool:
        return not self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The set fields, by their request names (the stored shape and the summary's `resources`)."""
        return {k: getattr(self, k) for k in KEYS if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Resources:
        """From `to_dict`'s shape (stored records: already checked, unknown keys ignored)."""
        data = data or {}
        return cls(**{k: data[k] for k in KEYS if data.get(k) is not None})


def canonical_gpu_type(name: str, known: tuple[str, ...] | frozenset[str]) -> str | None:
    """`h100` -> `H100`: the table's own spelling, case-insensitive; None when no table has it."""
    folded = name.strip().casefold()
    return next((k for k in known if k.casefold() == folded), None)


def _int(value: Any, path: str, low: int, high: int, errors: list[FieldError]) -> int | None:
    # 8.0 is an integer in JSON's eyes, and clients (JavaScript) send it that way.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(path, f"must be an integer, got {_type_name(value)}"))
        return None
    if not low <= value <= high:
        errors.append(FieldError(path, f"must be between {low} and {high}, got {value}"))
        return None
    return value


def _number(value: Any, path: str, high: float, errors: list[FieldError]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(FieldError(path, f"must be a number, got {_type_name(value)}"))
        return None
    if not 0 < value <= high:
        errors.append(FieldError(path, f"must be greater than 0 and at most {high:g}, got {value}"))
        return None
    return int(value) if float(value).is_integer() else float(value)


def parse_resources(value: Any, known_gpu_types: tuple[str, ...], errors: list[FieldError]) -> Resources:
    """The request's `resources` (None or missing: all defaults); errors name `resources.<key>`."""
    if value is None:
        return Resources()
    if not isinstance(value, dict):
        errors.append(FieldError("resources", f"must be an object, got {_type_name(value)}"))
        return Resources()
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"resources.{key}" if str(key).strip() else 'resources.""'
        if key not in KEYS:
            errors.append(FieldError(path, f"is not a resource: use {', '.join(KEYS)}"))
            continue
        if item is None:
            continue
        if key == "gpus":
            out[key] = _int(item, path, 0, MAX_GPUS, errors)
        elif key == "nodes":
            out[key] = _int(item, path, 1, MAX_NODES, errors)
        elif key == "max_duration_minutes":
            out[key] = _int(item, path, 1, MAX_DURATION_MINUTES, errors)
        elif key == "cpus":
            out[key] = _number(item, path, MAX_CPUS, errors)
        elif key == "memory_gb":
            out[key] = _number(item, path, MAX_MEMORY_GB, errors)
        elif not isinstance(item, str):
            errors.append(FieldError(path, f"must be a string, got {_type_name(item)}"))
        else:
            canonical = canonical_gpu_type(item, known_gpu_types)
            if canonical is None:
                errors.append(FieldError(path, f"must be one of {', '.join(known_gpu_types)} (case-insensitive), got {item[:40]!r}"))
            out[key] = canonical
    return Resources(**{k: v for k, v in out.items() if v is not None})


# ---- what a backend can place ----------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """What one backend can place. `gpu_types`: type -> the GPU counts per node it comes in (an empty
    tuple: any count from 1 to MAX_GPUS); None: the backend can't choose a type (it uses what it has).
    `default_gpu_type`: the type `gpus` alone gets (None: no particular one). `table_setting`: where more
    types come from, named in errors."""

    backend: str
    gpu_types: Mapping[str, tuple[int, ...]] | None
    max_nodes: int = MAX_NODES
    default_gpu_type: str | None = None
    default_gpus: int = 1
    table_setting: str | None = None
    # True: `gpus` without a type (and no default type) can't be placed (Vertex picks a machine by type).
    needs_type: bool = False
    # True: CPUs and memory come with the machine type and can't be asked for (Vertex).
    sized_by_machine: bool = False


def placement_problems(res: Resources, placement: Placement) -> list[FieldError]:
    """Why `placement`'s backend can't run `res` (each error names the fields and lists what exists)."""
    errors: list[FieldError] = []
    where = f"the {placement.backend} backend"
    if res.node_count > placement.max_nodes:
        what = "runs on this machine only" if placement.max_nodes == 1 else f"runs at most {placement.max_nodes} nodes"
        errors.append(FieldError("resources.nodes", f"{where} {what}: nodes must be at most {placement.max_nodes}, got {res.node_count}"))
    if placement.sized_by_machine:
        for key in ("cpus", "memory_gb"):
            if getattr(res, key) is not None:
                errors.append(
                    FieldError(
                        f"resources.{key}", f"{where} sizes CPUs and memory by machine type (chosen from resources.gpu_type and gpus): drop resources.{key}"
                    )
                )
    if placement.gpu_types is None:
        return errors
    more = f" (more through {placement.table_setting})" if placement.table_setting else ""
    if res.gpu_type is not None and res.gpu_type not in placement.gpu_types:
        have = ", ".join(placement.gpu_types) or "none"
        errors.append(FieldError("resources.gpu_type", f"{where} has no {res.gpu_type} GPUs; it has {have}{more}"))
        return errors
    if res.gpus == 0 and res.gpu_type is not None:
        errors.append(FieldError("resources.gpu_type", "a GPU type needs at least one GPU: resources.gpus is 0 (drop gpu_type for a CPU-only job)"))
        return errors
    gpu_type = res.gpu_type or placement.default_gpu_type
    if not res.gpus:
        return errors
    if gpu_type is None:
        if placement.needs_type:
            have = ", ".join(placement.gpu_types)
            errors.append(FieldError("resources.gpu_type", f"{where} needs a GPU type for resources.gpus: one of {have}{more}"))
        return errors
    counts = placement.gpu_types.get(gpu_type, ())
    if counts and res.gpus not in counts:
        named = f"resources.gpu_type {gpu_type}" if res.gpu_type is not None else f"the default GPU type {gpu_type} (resources.gpu_type unset)"
        errors.append(
            FieldError(
                "resources.gpus",
                f"{where} places {named} only as {', '.join(map(str, counts))} GPUs per node; resources.gpus is {res.gpus}{more}",
            )
        )
    return errors


def known_gpu_types(*tables: Mapping[str, Any]) -> tuple[str, ...]:
    """Every type name: the built-in ones first, then each table's additions, in order."""
    names = list(GPU_TYPES)
    for table in tables:
        names += [n for n in table if canonical_gpu_type(n, tuple(names)) is None]
    return tuple(names)


def by_type_name(table: Mapping[str, Any]) -> dict[str, Any]:
    """A table keyed by the built-in spelling where a key is one case-insensitively (`h100` -> `H100`)."""
    return {canonical_gpu_type(k, GPU_TYPES) or k: v for k, v in table.items()}
