"""The studio's `tuning_parameters` as trainer flags, and its global batch split over the ranks.

Pure; a section of the translation in `shared/domain/studio.py`. `batch_size` is the global batch:
per-device batch x accumulation x data-parallel ranks (`data_parallel_ranks`).
"""

from __future__ import annotations

from typing import Any

from shared.domain.backend import BackendRules
from shared.domain.flag_rendering import KEY_RE, key_name, suggest
from shared.domain.json_types import type_name as _type_name
from shared.domain.resources import Resources
from shared.domain.studio_spec import (
    ELSEWHERE,
    MAX_BATCH_SIZE,
    MAX_TOKENS_PER_DEVICE,
    PER_DEVICE_CHOICES,
    TUNING_ALIASES,
    TUNING_FLAGS,
    TranslationBase,
    elsewhere,
    same,
)
from trainer import flags as trainer_flags


def data_parallel_ranks(res: Resources, rules: BackendRules) -> tuple[int, int]:
    """(trainer processes per node, nodes) a job will run with: what its resources say, else what the
    backend does when they are unset (the same choices its adapter makes; `gpus: 0` is one CPU process)."""
    default_per_node, default_nodes = rules.default_parallel
    if res.gpus is not None:
        per_node = max(res.gpus, 1)
    else:
        per_node = default_per_node
        placement = rules.placement
        if res.gpu_type is not None and placement is not None and placement.gpu_types:
            counts = placement.gpu_types.get(res.gpu_type) or ()
            if counts:  # a type that comes in fixed counts (Vertex): its default count, else its smallest
                per_node = placement.default_gpus if placement.default_gpus in counts else min(counts)
    nodes = res.nodes if res.nodes is not None else default_nodes
    return max(per_node, 1), max(nodes, 1)


class TuningSections(TranslationBase):
    """`tuning_parameters` -> trainer flags (by alias or name); `batch_size` -> per-device batch and accumulation."""

    def tuning(self, resources: Resources, backend: BackendRules, method: str) -> None:
        value = self.body.get("tuning_parameters")
        if value is None:
            return
        if not isinstance(value, dict):
            self.error("tuning_parameters", f"must be an object, got {_type_name(value)}")
            return
        names = [*TUNING_FLAGS, *TUNING_ALIASES, "batch_size"]
        for key, item in value.items():
            path = f"tuning_parameters.{key_name(key)}"
            if not isinstance(key, str) or not KEY_RE.match(key):
                self.error(path, f"is not a valid parameter name: names are snake_case{suggest(str(key), names)}")
            elif key in ELSEWHERE:
                self.error(path, f"'{key}' is not a tuning parameter{elsewhere(key, ': set {}')}")
            elif key == "batch_size":
                continue
            elif key in TUNING_ALIASES:
                flag = TUNING_ALIASES[key]
                if flag in value and value[flag] is not None and item is not None and not same(value[flag], item):
                    self.error(path, f"must agree with tuning_parameters.{flag}: give one")
                else:
                    self.flag(flag, item, path)
            elif key in trainer_flags.BY_NAME:
                if key in self.old:  # an alias set it already (and agreed)
                    continue
                self.flag(key, item, path)
            else:
                self.error(path, f"unknown trainer flag '{key}'{suggest(key, names)}")
        if "batch_size" in value and value["batch_size"] is not None:
            self.batch(value, resources, backend)

    def batch(self, tuning: dict[str, Any], resources: Resources, backend: BackendRules) -> None:
        """The studio's global batch size, split into per-device batch x accumulation x ranks."""
        path = "tuning_parameters.batch_size"
        size = tuning["batch_size"]
        if isinstance(size, float) and size.is_integer():
            size = int(size)  # JavaScript has one number type
        if isinstance(size, bool) or not isinstance(size, int):
            self.error(path, f"must be an integer, got {_type_name(size)}")
            return
        if not 1 <= size <= MAX_BATCH_SIZE:
            self.error(path, f"must be between 1 and {MAX_BATCH_SIZE}, got {size}")
            return
        per_node, nodes = data_parallel_ranks(resources, backend)
        ranks = per_node * nodes
        how = f"{ranks} data-parallel rank{'s' if ranks != 1 else ''} ({per_node} per node x {nodes} node{'s' if nodes != 1 else ''})"
        if size % ranks:
            self.error(path, f"must be a multiple of the {how}: the global batch is split evenly over them, and {size} isn't")
            return
        per_rank = size // ranks

        def given(name: str) -> int | None:
            item = tuning.get(name)
            return item if isinstance(item, int) and not isinstance(item, bool) and item >= 1 else None

        device, accumulation = given("per_device_train_batch_size"), given("gradient_accumulation_steps")
        if device is not None and accumulation is not None:
            if device * accumulation != per_rank:
                self.error(path, f"must equal per_device_train_batch_size x gradient_accumulation_steps x {how} = {device * accumulation * ranks}, got {size}")
            return
        if device is not None or accumulation is not None:
            known = device if device is not None else accumulation
            assert known is not None
            if per_rank % known:
                other = "per_device_train_batch_size" if device is not None else "gradient_accumulation_steps"
                self.error(path, f"must be a multiple of {other} x {how} = {known * ranks}, got {size}")
                return
            if device is None:
                self.flag("per_device_train_batch_size", per_rank // known, path)
            else:
                self.flag("gradient_accumulation_steps", per_rank // known, path)
            return
        length = self.old.get("max_length")
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            length = int(trainer_flags.BY_NAME["max_length"].default)
        fits = [c for c in PER_DEVICE_CHOICES if per_rank % c == 0 and c * length <= MAX_TOKENS_PER_DEVICE] or [1]
        self.flag("per_device_train_batch_size", fits[0], path)
        self.flag("gradient_accumulation_steps", per_rank // fits[0], path)
