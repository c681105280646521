"""The Kubernetes backend's rules: datasets on gs:// or s3://, any GPU count of a type its node
selector table names, and its Job / pod state words (as the watcher and reconcile report them) as statuses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.backend import SIGTERM_CODES, BackendKind, BackendRules, Outcome
from shared.domain.events import TrainingEvent
from shared.domain.job import Job
from shared.domain.resources import Placement
from shared.domain.status import FailureClass as FC
from shared.domain.status import JobStatus as S
from shared.errors import FieldError

KUBERNETES = BackendKind("kubernetes")


@dataclass(frozen=True)
class KubernetesRules(BackendRules):
    kind: BackendKind = KUBERNETES

    def check_location(
        self, field_name: str, value: str, errors: list[FieldError], path: str | None = None, resolve_links: Callable[[str], str] | None = None
    ) -> str:
        if field_name == "dataset_file" and not value.startswith(("gs://", "s3://")):
            errors.append(FieldError(path or field_name, "must be a gs:// or s3:// URI for the kubernetes backend"))
        return value

    def interpret(self, job: Job, ev: TrainingEvent) -> Outcome:
        return interpret_kubernetes(job, ev)


def k8s_placement(selectors: Mapping[str, Any]) -> Placement:
    """Kubernetes: any GPU count of a type the node selector table names."""
    return Placement("kubernetes", {name: () for name in selectors}, table_setting="K8S_GPU_NODE_SELECTORS")


K8S_USER_REASONS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "OOMKilled",
    "Error",
}
K8S_PREEMPTION_REASONS = {"Evicted", "Preempted", "PreemptionByScheduler", "PodDisruption", "DisruptionTarget", "Shutdown", "NodeShutdown", "Terminated"}
K8S_CAPACITY_REASONS = {"Unschedulable", "FailedScheduling", "NotTriggerScaleUp"}


def interpret_kubernetes(job: Job, ev: TrainingEvent) -> Outcome:
    state = ev.state or ""
    reason = ev.reason
    if state in ("Pending", "Waiting", "Created"):
        # Pending pods, image pulls still retrying, unschedulable: still `submitted`, with the reason.
        return Outcome(S.SUBMITTED, reason, None, ev.message)
    if state == "Running":
        return Outcome(S.RUNNING)
    if state in ("Complete", "Succeeded"):
        return Outcome(S.SUCCEEDED, "Completed")
    if state == "Deleted":
        if job.cancel_requested:
            return Outcome(S.CANCELLED, "Cancelled")
        return Outcome(S.FAILED, "JobDeleted", FC.INFRA, "the Kubernetes Job was deleted outside the platform")
    if state == "Failed":
        if job.cancel_requested:
            return Outcome(S.CANCELLED, "Cancelled")
        if reason in K8S_PREEMPTION_REASONS or ev.exit_code in SIGTERM_CODES:
            return Outcome(S.FAILED, reason or "Preempted", FC.PREEMPTED, ev.message)
        if reason in K8S_CAPACITY_REASONS:
            return Outcome(S.FAILED, reason, FC.CAPACITY, ev.message)
        if reason and "quota" in reason.lower():
            return Outcome(S.FAILED, reason, FC.QUOTA, ev.message)
        if ev.exit_code == 2:
            return Outcome(S.FAILED, "BadInput", FC.USER, ev.message)
        if reason in K8S_USER_REASONS or ev.exit_code not in (None, 0):
            return Outcome(S.FAILED, reason or "TrainerError", FC.USER, ev.message)
        return Outcome(S.FAILED, reason or "Failed", FC.INFRA, ev.message)
    return Outcome()
