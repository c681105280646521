"""The local backend's rules: paths inside the allowed roots, one node, exit codes as statuses."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.backend import SIGKILL_CODES, SIGTERM_CODES, BackendKind, BackendRules, Outcome
from shared.domain.events import TrainingEvent
from shared.domain.job import Job
from shared.domain.resources import Placement
from shared.domain.status import FailureClass as FC
from shared.domain.status import JobStatus as S
from shared.errors import FieldError

LOCAL = BackendKind("local")
# The local backend runs on this machine: one node; the GPUs are whatever it has.
LOCAL_PLACEMENT = Placement("local", None, max_nodes=1)


def _resolve(path: str, base: str) -> str:
    joined = path if posixpath.isabs(path) else posixpath.join(base, path)
    return posixpath.normpath(joined)


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        root = posixpath.normpath(root)
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


@dataclass(frozen=True)
class LocalRules(BackendRules):
    kind: BackendKind = LOCAL
    placement: Placement | None = LOCAL_PLACEMENT
    # Absolute folders that a local job's dataset_file and output_dir must resolve inside.
    roots: tuple[str, ...] = ()
    # Folder relative local paths are resolved from (the repo root).
    base: str = "/"
    # None: `<first root>/studio`.
    studio_output_root: str | None = None

    def __post_init__(self) -> None:
        if self.studio_output_root is None and self.roots:
            object.__setattr__(self, "studio_output_root", posixpath.join(self.roots[0], "studio"))

    def check_location(
        self, field_name: str, value: str, errors: list[FieldError], path: str | None = None, resolve_links: Callable[[str], str] | None = None
    ) -> str:
        where = path or field_name
        if value.startswith(("gs://", "s3://")):
            if field_name == "output_dir":
                errors.append(FieldError(where, "must be a local folder; use upload_output_to for gs:// or s3://"))
            return value
        if "://" in value:
            errors.append(FieldError(where, "must be a local path, gs:// or s3:// URI"))
            return value
        resolved = _resolve(value, self.base)
        if resolve_links is not None:
            # The trainer gets the resolved path too: a link swapped after this check can't redirect it.
            resolved = resolve_links(resolved)
        if not _inside(resolved, self.roots):
            roots = ", ".join(self.roots) or "(none configured)"
            errors.append(FieldError(where, f"must resolve inside the local backend's allowed roots: {roots}"))
        return resolved

    def resolved(self, realpath: Callable[[str], str]) -> LocalRules:
        return dataclasses.replace(self, roots=tuple(realpath(r) for r in self.roots))

    def interpret(self, job: Job, ev: TrainingEvent) -> Outcome:
        return interpret_local(job, ev)


def interpret_local(job: Job, ev: TrainingEvent) -> Outcome:
    state = (ev.state or "").lower()
    if state in ("started", "running"):
        return Outcome(S.RUNNING)
    if state == "exited":
        code = ev.exit_code
        if code == 0:
            return Outcome(S.SUCCEEDED, "Completed")
        if code in SIGTERM_CODES or code in SIGKILL_CODES:
            if job.cancel_requested:
                return Outcome(S.CANCELLED, "Cancelled")
            if code in SIGTERM_CODES:
                return Outcome(S.FAILED, "Preempted", FC.PREEMPTED, "the trainer was stopped with SIGTERM (exit 143)")
            return Outcome(S.FAILED, "Killed", FC.INFRA, "the trainer was killed (SIGKILL; out of memory?)")
        if code == 2:
            return Outcome(S.FAILED, "BadInput", FC.USER, ev.message or "the trainer rejected its input (exit 2)")
        if code is not None and code < 0:
            return Outcome(S.FAILED, f"Signal{-code}", FC.INFRA, f"the trainer died of signal {-code}")
        return Outcome(S.FAILED, "TrainerError", FC.USER, ev.message or f"the trainer exited with code {code}")
    if state == "lost":
        # The supervisor has no such process (the server restarted): it can't still be running here.
        if job.cancel_requested:
            return Outcome(S.CANCELLED, "Cancelled")
        return Outcome(S.FAILED, "ProcessLost", FC.INFRA, "the local trainer process is gone (the server restarted?)")
    if state == "failed_to_start":
        return Outcome(S.FAILED, ev.reason or "StartFailed", FC.INFRA, ev.message)
    return Outcome()
