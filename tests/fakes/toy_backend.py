"""A backend that exists only in the tests: "toy", a pretend cloud in this process. It is what
docs/architecture.md's "How to add a backend" builds, step by step, and nothing outside this file and
its registration (`shared.adapters.registry.registered(ToyUnit())`) knows it.

1. Its **rules** (`ToyRules`, pure): datasets come from `toy://` URIs, at most `TOY_MAX_GPUS` GPUs of its
   one type ("T1") on one node, and its state words (`queued`, `working`, `done`, `broken`) as statuses.
2. Its **settings group** (`ToySettings`, env prefix `TOY_`): `TOY_REGION` is required (unset: the
   backend is unavailable and `/health` says so), `TOY_MAX_GPUS` has its default here only.
3. Its **adapter** (`ToyBackend`, the `shared.ports.Backend` protocol): `submit` hands the job to the
   `ToyCloud`, `cancel` stops it there, `observe` reads its state back for reconcile. The cloud reports
   each step as a `training-events` envelope with `"source": "toy"` through `BuildContext.events`
   (as the local supervisor does), unless told to lose them (`lose_events`), which reconcile repairs.
4. Its **unit** (`ToyUnit`): the kind, the group, `rules`, `build`; `problem` and `health` come from the
   group's `problems()` and `describe()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.adapters.unit import BackendUnit, BuildContext, RulesContext
from shared.domain.backend import BackendKind, BackendRules, Outcome
from shared.domain.events import TrainingEvent
from shared.domain.job import Job, iso
from shared.domain.resources import Placement
from shared.domain.status import FailureClass, JobStatus
from shared.errors import FieldError
from shared.ports import Backend, Observation, Submission
from shared.settings_group import SettingsGroup

TOY = BackendKind("toy")
TOY_GPU = "T1"


# ---- 1. rules (pure) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToyRules(BackendRules):
    kind: BackendKind = TOY

    def check_location(self, field_name: str, value: str, errors: list[FieldError], path: str | None = None, resolve_links: Any = None) -> str:
        if field_name == "dataset_file" and not value.startswith("toy://"):
            errors.append(FieldError(path or field_name, "must be a toy:// URI for the toy backend"))
        return value

    def interpret(self, job: Job, ev: TrainingEvent) -> Outcome:
        state = ev.state or ""
        if state == "queued":
            return Outcome(JobStatus.SUBMITTED, "Queued")
        if state == "working":
            return Outcome(JobStatus.RUNNING)
        if state == "done":
            return Outcome(JobStatus.SUCCEEDED, "Completed")
        if state == "stopped":
            return Outcome(JobStatus.CANCELLED, "Cancelled")
        if state == "broken":
            return Outcome(JobStatus.FAILED, "ToyBroke", FailureClass.USER, ev.message)
        return Outcome()


# ---- 2. settings group -------------------------------------------------------------------------------
class ToySettings(SettingsGroup):
    """The toy backend (`TOY_*`)."""

    model_config = SettingsConfigDict(env_prefix="TOY_")

    region: str | None = Field(None, description="Toy: where its pretend cloud runs (required).")
    max_gpus: int = Field(2, description="Toy: GPUs a job may ask for.", ge=1)

    def problems(self) -> list[str]:
        return self.config_errors + ([] if self.region else ["TOY_REGION is not set"])

    def describe(self) -> dict[str, Any]:
        return {"region": self.region, "gpuTypes": {TOY_GPU: list(range(1, self.max_gpus + 1))}}


# ---- 3. adapter ----------------------------------------------------------------------------------------
@dataclass
class ToyRun:
    job_id: str
    state: str = "queued"
    stop: threading.Event = field(default_factory=threading.Event)


class ToyCloud:
    """The pretend cloud: each job is queued, works for `steps` steps (a PROGRESS line each), then is
    done, or broken when its `--max_steps` is 13; every change is reported through `events`."""

    def __init__(self, events: Callable[[dict[str, Any]], Any] | None, step_seconds: float = 0.05, steps: int = 3):
        self.events = events
        self.step_seconds = step_seconds
        self.steps = steps
        self.runs: dict[str, ToyRun] = {}
        self.lose_events = False  # the envelopes never arrive (a lost subscription): reconcile's case
        self._threads: list[threading.Thread] = []

    def start(self, job: Job) -> ToyRun:
        known = self.runs.get(job.id)
        if known is not None:
            return known
        run = self.runs[job.id] = ToyRun(job.id)
        thread = threading.Thread(target=self._drive, args=(run, "--max_steps=13" in job.args), daemon=True)
        self._threads.append(thread)
        thread.start()
        return run

    def _drive(self, run: ToyRun, breaks: bool) -> None:
        self._report(run, "queued")
        for step in range(1, self.steps + 1):
            if run.stop.wait(self.step_seconds):
                self._report(run, "stopped")
                return
            logs = [{"seq": step, "timestamp": iso(datetime.now(UTC)), "stream": "stdout", "message": f'PROGRESS {{"event": "step", "step": {step}}}'}]
            self._report(run, "working", logs=logs)
        self._report(run, "broken" if breaks else "done", message="the toy broke at step 13" if breaks else None)

    def _report(self, run: ToyRun, state: str, **extra: Any) -> None:
        run.state = state
        if self.events is not None and not self.lose_events:
            self.events({"v": 1, "job_id": run.job_id, "source": str(TOY), "observed_at": iso(datetime.now(UTC)), "state": state, **extra})

    def join(self, timeout: float = 10.0) -> None:
        for thread in self._threads:
            thread.join(timeout)


class ToyBackend:
    name = str(TOY)

    def __init__(self, settings: ToySettings, cloud: ToyCloud):
        self.settings = settings
        self.cloud = cloud

    def submit(self, job: Job, env: dict[str, str]) -> Submission:
        run = self.cloud.start(job)  # idempotent: a redelivery finds the run the first delivery started
        return Submission(
            external_id=f"{self.settings.region}/{run.job_id}", manifest={"kind": "ToyRun", "region": self.settings.region, "args": list(job.args)}
        )

    def cancel(self, job: Job) -> bool | None:
        run = self.cloud.runs.get(job.id)
        if run is None:
            return False
        if run.state in ("done", "broken", "stopped"):
            return None
        run.stop.set()
        return True

    def observe(self, job: Job) -> Observation | None:
        run = self.cloud.runs.get(job.id)
        return Observation(state=run.state) if run is not None else None

    def release(self, job: Job) -> None:
        return None

    def held(self) -> list[str]:
        return []


# ---- 4. unit -------------------------------------------------------------------------------------------
class ToyUnit(BackendUnit):
    kind = TOY
    settings = ToySettings

    def __init__(self, step_seconds: float = 0.05) -> None:
        self.step_seconds = step_seconds
        self.clouds: list[ToyCloud] = []  # one per build: what the tests look into

    def rules(self, settings: Any, context: RulesContext) -> ToyRules:
        return ToyRules(placement=Placement("toy", {TOY_GPU: tuple(range(1, settings.max_gpus + 1))}, default_gpu_type=TOY_GPU, max_nodes=1))

    def build(self, settings: Any, context: BuildContext) -> Backend:
        cloud = ToyCloud(context.events, step_seconds=self.step_seconds)
        self.clouds.append(cloud)
        return ToyBackend(settings, cloud)
