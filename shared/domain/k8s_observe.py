"""What a Kubernetes Job and its pods say about a training job, in the words `training-events` uses.

Pure: it works on plain dicts (the API's JSON, or `ApiClient.sanitize_for_serialization(obj)`), never on
client models, so the cluster watcher (`shared/adapters/kubernetes/watcher.py`, a stream of watch events) and
reconcile's one-shot `observe_job` read a Job the same way, and the unit tests are tables of dicts.

The state words are the ones `shared.domain.backends.kubernetes.interpret_kubernetes` understands:

| what the cluster shows                                    | state      | reason                        |
|-----------------------------------------------------------|------------|-------------------------------|
| Job condition `Complete`                                  | `Complete` | `Completed`                   |
| Job condition `Failed` / `FailureTarget`                  | `Failed`   | the pod's (`OOMKilled`, `Evicted`, ...) when it says more, else the Job's (`BackoffLimitExceeded`, `DeadlineExceeded`) |
| Job condition `Suspended`                                 | `Pending`  | `Suspended`                   |
| pod `PodScheduled=False` (`Unschedulable`)                | `Pending`  | `Unschedulable`               |
| container waiting on an image pull / its config           | `Waiting`  | `ImagePullBackOff`, ... ; after the grace: `Failed` with that reason |
| other container waiting (`ContainerCreating`)             | `Pending`  | that reason                   |
| pod `Running`                                             | `Running`  |                               |
| pod `Succeeded`                                           | `Complete` | `Completed`                   |
| pod `Failed`: `status.reason: Evicted` / `DisruptionTarget` | `Failed` | `Evicted` / `Preempted`       |
| pod `Failed`: container terminated `OOMKilled`            | `Failed`   | `OOMKilled`, exit 137         |
| pod `Failed`: other termination                           | `Failed`   | its reason (`Error`), its exit code |
| the Job was deleted before it finished                    | `Deleted`  |                               |

An Indexed Job of several completions (a several-node job: one pod per node, each its completion index)
is read per index, each index by its own current pod: `Running` once every index runs, `Failed` when any
index fails past the retries (the message names the index: `index 1 (pod ...): ...`), otherwise the
state of the first index that is not running yet (`Pending`, `Unschedulable`, ...; message `index N:`).
The Job's own conditions (Complete, Failed) decide first, as for one pod.

A failed pod fails the job only when the Job can't retry (failures > `backoffLimit`) or the Job says
so; until then it is `Pending`/`BackOff` (which can't move a running job backwards). Without its Job,
a pod's terminal state is not trusted (the Job decides retries): `state=None`, no opinion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeGuard, cast

from shared.domain import naming

PENDING, WAITING, RUNNING, COMPLETE, FAILED, DELETED = "Pending", "Waiting", "Running", "Complete", "Failed", "Deleted"
TERMINAL_STATES = frozenset({COMPLETE, FAILED, DELETED})

# Waiting reasons that won't fix themselves: reported as `Waiting`, and as `Failed` after the grace.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"})
# DisruptionTarget condition reasons that mean the scheduler preempted the pod (the rest are evictions).
PREEMPTION_REASONS = frozenset({"PreemptionByScheduler", "PreemptionByKubeScheduler"})
OOM_EXIT_CODE = 137
DEFAULT_BACKOFF_LIMIT = 6  # the API server's default for `spec.backoffLimit`
TRAINER_CONTAINER = "trainer"
CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


class ObservedState(NamedTuple):
    """The pure reading of a Kubernetes Job (and its pods) in the watcher's event words. The Kubernetes
    backend hands it to reconcile as a `shared.ports.Observation` (same fields; that one is every
    backend's answer to `observe`), the watcher publishes it as a training event."""

    state: str | None  # None: no opinion (nothing to publish)
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None


NO_OPINION = ObservedState(None)
StateOf = Callable[[Mapping[str, Any]], ObservedState]  # one pod's state, with the clock and grace bound in


# ---- small readers ---------------------------------------------------------------------------------
def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def _status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("status") or {}


def parse_k8s_time(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The condition of that type whose status is `True`, or for `PodScheduled` any status."""
    for cond in _status(obj).get("conditions") or []:
        if cond.get("type") == kind:
            return cast("Mapping[str, Any]", cond)
    return None


def _is_true(cond: Mapping[str, Any] | None) -> TypeGuard[Mapping[str, Any]]:
    return cond is not None and str(cond.get("status")) == "True"


def job_id_of(obj: Mapping[str, Any] | None) -> str | None:
    """The platform's job id: the annotation (always the full id), else the label when it is not a hash."""
    meta = _meta(obj)
    value = (meta.get("annotations") or {}).get(naming.K8S_JOB_ID_ANNOTATION)
    if value:
        return str(value)
    label = (meta.get("labels") or {}).get(naming.K8S_JOB_ID_LABEL)
    if label and not str(label).startswith("h-"):
        return str(label)
    return None


def owner_job_uid(pod: Mapping[str, Any]) -> str | None:
    """The uid of the Job that owns the pod (ownerReference, else the Job controller's label)."""
    meta = _meta(pod)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("uid"):
            return str(ref["uid"])
    labels = meta.get("labels") or {}
    for key in CONTROLLER_UID_LABELS:
        if labels.get(key):
            return str(labels[key])
    return None


def trainer_status(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The trainer container's status (by name, else the first container's)."""
    statuses = _status(pod).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == TRAINER_CONTAINER:
            return cast("Mapping[str, Any]", cs)
    return cast("Mapping[str, Any]", statuses[0]) if statuses else None


def container_name(pod: Mapping[str, Any]) -> str | None:
    """The container whose log is the job's log."""
    containers = ((pod or {}).get("spec") or {}).get("containers") or []
    names = [c.get("name") for c in containers if c.get("name")]
    if TRAINER_CONTAINER in names:
        return TRAINER_CONTAINER
    return names[0] if names else None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    cs = trainer_status(pod)
    if not cs:
        return None
    state = cs.get("state") or {}
    return state.get("terminated") or (cs.get("lastState") or {}).get("terminated")


def image_pull_reason(pod: Mapping[str, Any]) -> str | None:
    """The waiting reason when the trainer waits on something that won't fix itself (image, config)."""
    cs = trainer_status(pod)
    waiting = ((cs or {}).get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    return reason if reason in IMAGE_PULL_REASONS else None


def has_started(pod: Mapping[str, Any]) -> bool:
    """True when the trainer container has run (so `pods/log` has something to give)."""
    cs = trainer_status(pod)
    state = (cs or {}).get("state") or {}
    return state.get("running") is not None or state.get("terminated") is not None or ((cs or {}).get("lastState") or {}).get("terminated") is not None


def scheduled_at(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod was bound to a node (when its image pull began): a one-shot read's `first_seen`."""
    cond = condition(pod, "PodScheduled")
    if _is_true(cond):
        when = parse_k8s_time(cond.get("lastTransitionTime"))
        if when:
            return when
    return parse_k8s_time(_status(pod).get("startTime")) or parse_k8s_time(_meta(pod).get("creationTimestamp"))


def completion_index(pod: Mapping[str, Any]) -> int | None:
    """An Indexed Job's pod's index (annotation, else label), None for any other pod."""
    meta = _meta(pod)
    raw = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(COMPLETION_INDEX)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def indexed_completions(job: Mapping[str, Any] | None) -> int:
    """How many indexes a several-pod Indexed Job has; 0 for a Job of one pod."""
    spec = (job or {}).get("spec") or {}
    if spec.get("completionMode") != "Indexed":
        return 0
    completions = int(spec.get("completions") or 1)
    return completions if completions > 1 else 0


def _with_index(observed: ObservedState, pod: Mapping[str, Any]) -> ObservedState:
    index = completion_index(pod)
    if index is None:
        return observed
    detail = f": {observed.message}" if observed.message else (f": {observed.reason}" if observed.reason else "")
    return observed._replace(message=f"index {index} (pod {_meta(pod).get('name')}){detail}")


# ---- one pod ---------------------------------------------------------------------------------------
def _disruption(pod: Mapping[str, Any]) -> ObservedState | None:
    status = _status(pod)
    if status.get("reason") == "Evicted":
        return ObservedState(FAILED, "Evicted", status.get("message"))
    cond = condition(pod, "DisruptionTarget")
    if _is_true(cond):
        why = str(cond.get("reason") or "")
        reason = "Preempted" if why in PREEMPTION_REASONS else "Evicted"
        return ObservedState(FAILED, reason, cond.get("message") or why or None)
    return None


def _failure(pod: Mapping[str, Any]) -> ObservedState:
    disrupted = _disruption(pod)
    if disrupted is not None:
        last = _terminated(pod) or {}
        return disrupted._replace(exit_code=last.get("exitCode"))
    term = _terminated(pod)
    if term:
        reason = term.get("reason") or "Error"
        code = term.get("exitCode")
        if reason == "OOMKilled":
            return ObservedState(FAILED, "OOMKilled", term.get("message") or "the trainer ran out of memory", code if code is not None else OOM_EXIT_CODE)
        return ObservedState(FAILED, reason, term.get("message") or _status(pod).get("message"), code)
    status = _status(pod)
    return ObservedState(FAILED, status.get("reason") or "Failed", status.get("message"))


def pod_state(pod: Mapping[str, Any], now: datetime, first_seen: datetime | None, grace_seconds: float = 300) -> ObservedState:
    """One pod's state. `first_seen`: since when the pod has been seen waiting on an image pull (the
    watcher's memory, or `scheduled_at` for a one-shot read); after `grace_seconds` it is `Failed`."""
    phase = _status(pod).get("phase") or "Pending"
    if phase == "Succeeded":
        term = _terminated(pod) or {}
        return ObservedState(COMPLETE, "Completed", None, term.get("exitCode", 0))
    if phase == "Failed":
        return _failure(pod)
    if phase == "Running":
        return ObservedState(RUNNING)
    if phase != "Pending":  # Unknown: the node is unreachable; say nothing rather than guess
        return NO_OPINION
    sched = condition(pod, "PodScheduled")
    if sched is not None and not _is_true(sched):
        return ObservedState(PENDING, sched.get("reason") or "Unschedulable", sched.get("message"))
    cs = trainer_status(pod)
    waiting = ((cs or {}).get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if reason in IMAGE_PULL_REASONS:
        message = waiting.get("message")
        since = first_seen or now
        if now - since >= timedelta(seconds=grace_seconds):
            waited = int((now - since).total_seconds())
            return ObservedState(FAILED, reason, f"{message or reason} (still failing after {waited}s)")
        return ObservedState(WAITING, reason, message)
    if reason:
        return ObservedState(PENDING, reason, waiting.get("message"))
    return ObservedState(PENDING)


# ---- the Job ---------------------------------------------------------------------------------------
def _created(pod: Mapping[str, Any]) -> tuple[str, str]:
    return (str(_meta(pod).get("creationTimestamp") or ""), str(_meta(pod).get("name") or ""))


def current_pod(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod that speaks for the Job: a running one, else the newest."""
    ordered = sorted(pods, key=_created)
    running = [p for p in ordered if _status(p).get("phase") == "Running"]
    speakers = running or ordered
    return speakers[-1] if speakers else None


def _failed_count(job: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> int:
    counted = _status(job).get("failed") or 0
    return max(int(counted), sum(1 for p in pods if _status(p).get("phase") == "Failed"))


def job_state(
    job: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]] = (),
    *,
    now: datetime | None = None,
    first_seen: Mapping[str, datetime] | None = None,
    image_pull_grace_seconds: float = 300,
) -> ObservedState:
    """The job's state from its Job object (None: not seen yet) and its pods. `first_seen` maps pod uid
    to when it was first seen waiting on an image pull (see `pod_state`)."""
    pods = list(pods)
    now = now or datetime.now(UTC)
    seen = first_seen or {}

    def state_of(pod: Mapping[str, Any]) -> ObservedState:
        return pod_state(pod, now, seen.get(str(_meta(pod).get("uid"))), image_pull_grace_seconds)

    if job is not None:
        if _is_true(condition(job, "Complete")) or _is_true(condition(job, "SuccessCriteriaMet")):
            term = next((_terminated(p) for p in reversed(sorted(pods, key=_created)) if _status(p).get("phase") == "Succeeded"), None) or {}
            return ObservedState(COMPLETE, "Completed", None, term.get("exitCode", 0))
        failed = condition(job, "Failed")
        if not _is_true(failed):
            failed = condition(job, "FailureTarget")
        if _is_true(failed):
            return _job_failure(failed, [p for p in pods if _status(p).get("phase") == "Failed"], state_of)
        suspended = condition(job, "Suspended")
        if _is_true(suspended):
            return ObservedState(PENDING, "Suspended", suspended.get("message"))
    completions = indexed_completions(job)
    if completions and job is not None:  # (indexed_completions of no Job is 0)
        return _indexed_state(job, pods, completions, state_of)
    pod = current_pod(pods)
    if pod is None:
        return ObservedState(PENDING) if job is not None else NO_OPINION
    observed = state_of(pod)
    if observed.state in (COMPLETE, FAILED) and observed.reason not in IMAGE_PULL_REASONS:
        if job is None:
            return NO_OPINION  # the Job decides whether a finished pod finishes the job
        if observed.state == FAILED:
            limit = (job.get("spec") or {}).get("backoffLimit")
            limit = DEFAULT_BACKOFF_LIMIT if limit is None else int(limit)
            failures = _failed_count(job, pods)
            if failures <= limit:
                detail = f"{observed.reason}, exit {observed.exit_code}" if observed.exit_code is not None else observed.reason
                return ObservedState(
                    PENDING, "BackOff", f"pod {_meta(pod).get('name')} failed ({detail}); the Job retries ({failures} of {limit + 1} attempts used)"
                )
    return observed


def _indexed_state(job: Mapping[str, Any], pods: list[Mapping[str, Any]], completions: int, state_of: StateOf) -> ObservedState:
    """A several-pod Indexed Job (no Complete/Failed condition yet), index by index."""
    by_index: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        index = completion_index(pod)
        if index is not None and 0 <= index < completions:
            by_index.setdefault(index, []).append(pod)
    current = {i: speaker for i, group in by_index.items() if (speaker := current_pod(group)) is not None}
    states = {i: state_of(pod) for i, pod in current.items()}
    failed = sorted(i for i, o in states.items() if o.state == FAILED)
    if failed:
        index = failed[0]
        observed = _with_index(states[index], current[index])
        if observed.reason in IMAGE_PULL_REASONS:
            return observed
        limit = (job.get("spec") or {}).get("backoffLimit")
        limit = DEFAULT_BACKOFF_LIMIT if limit is None else int(limit)
        failures = _failed_count(job, pods)
        if failures <= limit:
            return ObservedState(PENDING, "BackOff", f"{observed.message}; the Job retries ({failures} of {limit + 1} attempts used)")
        return observed
    running = [i for i, o in states.items() if o.state in (RUNNING, COMPLETE)]
    if len(running) == completions and any(states[i].state == RUNNING for i in running):
        return ObservedState(RUNNING)
    if len(running) == completions:  # every index succeeded: the Job's Complete condition follows
        return ObservedState(COMPLETE, "Completed", None, 0)
    waiting = [i for i in range(completions) if i not in running]
    first = waiting[0]
    if first in states:
        return _with_index(states[first], current[first])
    return ObservedState(PENDING, None, f"{len(running)} of {completions} pods running; index {first} has no pod yet")


def _job_failure(cond: Mapping[str, Any], failed_pods: list[Mapping[str, Any]], state_of: StateOf) -> ObservedState:
    reason = cond.get("reason") or "Failed"
    message = cond.get("message")
    pod = current_pod(failed_pods)
    indexed = [p for p in failed_pods if completion_index(p) is not None]
    if indexed:
        # The first index to fail is the cause; the Job controller then ends the others.
        pod = min(indexed, key=lambda p: (str((_terminated(p) or {}).get("finishedAt") or "~"), *_created(p)))
    if pod is None:
        return ObservedState(FAILED, reason, message)
    from_pod = _with_index(state_of(pod), pod)
    if reason == "DeadlineExceeded":
        # The Job killed its pods itself: their SIGTERM exit code would read as a preemption.
        return ObservedState(FAILED, reason, message)
    if from_pod.reason and from_pod.reason not in ("Error", "Failed"):
        return ObservedState(FAILED, from_pod.reason, from_pod.message or message, from_pod.exit_code)
    if completion_index(pod) is not None:
        return ObservedState(FAILED, reason, f"{from_pod.message}; {message}" if message else from_pod.message, from_pod.exit_code)
    return ObservedState(FAILED, reason, message, from_pod.exit_code)


def deleted_state(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]] = (), **kwargs: Any) -> ObservedState:
    """A Job that was deleted: its terminal state if it had one (a TTL clean-up), else `Deleted`."""
    last = job_state(job, pods, **kwargs)
    if last.state in (COMPLETE, FAILED):
        return last
    name = _meta(job).get("name")
    return ObservedState(DELETED, None, f"the Kubernetes Job {name} was deleted")
