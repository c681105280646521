"""The Vertex backend's settings group: every `VERTEX_*` variable, its default and the machine table,
in one pydantic-settings model the adapter (render, backend, secrets) takes as it is."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.adapters.vertex_secrets import SECRET_MANAGER_ENDPOINT
from shared.domain import resources as res
from shared.settings_group import JsonObject, SettingsGroup, env


class VertexSettings(SettingsGroup):
    """The Vertex backend: project, region, image, machines and per-job secrets (`VERTEX_*`)."""

    model_config = SettingsConfigDict(env_prefix="VERTEX_")

    project: str | None = Field(None, validation_alias=env("VERTEX_PROJECT", "PROJECT_ID"), description="Vertex: GCP project (`PROJECT_ID` also read).")
    region: str = Field("us-central1", description="Vertex: region of the CustomJob.")
    image_uri: str | None = Field(None, description="Vertex: trainer image (required).")
    machine_type: str = Field("a2-highgpu-1g", description="Vertex: machine type.")
    accelerator_type: str | None = Field("NVIDIA_TESLA_A100", description="Vertex: accelerator type.")
    accelerator_count: int = Field(1, description="Vertex: GPUs per replica.", ge=0)
    replica_count: int = Field(1, description="Vertex: worker replicas.", ge=1)
    machine_types: JsonObject = Field(
        None,
        description='Vertex: JSON map, GPU type -> `{"accelerator": ENUM, "machines": {"<gpus>": machine type}}`, replacing or adding '
        "types of the built-in table (Google's GPU machine types: A100 `a2-highgpu-*`, H100 `a3-highgpu-*`, ...).",
    )
    cpu_machine_type: str = Field("n1-standard-8", description="Vertex: machine type of a job with `resources.gpus: 0`.")
    service_account: str | None = Field(None, description="Vertex: service account the job runs as.")
    network: str | None = Field(None, description="Vertex: VPC network.")
    submit: bool = Field(False, description="Vertex: `1` creates the CustomJob; `0` stores the spec only (dry run).")
    hf_token_secret: str | None = Field(
        None,
        description="Vertex: Secret Manager secret version the trainer resolves for HF_TOKEN (used where per-job secrets are off, or a relaunch lost the value).",
    )
    job_secrets: bool = Field(
        True,
        description="Vertex: `1` puts each job's secret variables in a Secret Manager secret of its own, created at submit and deleted when the job ends; `0`: only the per-name references (`VERTEX_HF_TOKEN_SECRET`), and the api refuses other secrets.",
    )
    secret_project: str | None = Field(None, description="Vertex: project of the per-job secrets (default: `VERTEX_PROJECT`).")
    secret_endpoint: str = Field(
        SECRET_MANAGER_ENDPOINT,
        validation_alias="VERTEX_SECRET_MANAGER_ENDPOINT",
        description="Vertex: Secret Manager REST endpoint, for the launcher and (passed on) the trainer; a plain `http://` one (a test fake) is called without credentials.",
    )
    secret_ttl_seconds: int = Field(
        8 * 24 * 3600,
        description="Vertex: seconds after which Secret Manager itself deletes a per-job secret, should the platform never get to (a backstop; Vertex's longest default timeout is 7 days); `0`: none.",
        ge=0,
    )

    def shape_problems(self) -> list[str]:
        """VERTEX_MACHINE_TYPES' rows: a broken one makes the backend unavailable (never half a table)."""
        table = self.machine_types
        problems = []
        for name, row in (table or {}).items():
            machines = row.get("machines") if isinstance(row, dict) else None
            ok = (
                isinstance(row, dict)
                and isinstance(row.get("accelerator"), str)
                and isinstance(machines, dict)
                and machines
                and all(str(k).isdigit() and 1 <= int(k) <= res.MAX_GPUS and isinstance(v, str) and v for k, v in machines.items())
            )
            if not ok:
                problems.append(f'VERTEX_MACHINE_TYPES[{name!r}] must be {{"accelerator": "...", "machines": {{"<gpus 1-{res.MAX_GPUS}>": "<machine type>"}}}}')
        if problems:
            object.__setattr__(self, "machine_types", None)
        return problems

    @property
    def machine_table(self) -> dict[str, dict[str, Any]]:
        """The built-in table with VERTEX_MACHINE_TYPES' rows replacing or adding types."""
        table = copy.deepcopy(res.DEFAULT_VERTEX_MACHINE_TYPES)
        table.update(res.by_type_name(self.machine_types or {}))
        return table

    @property
    def secret_refs(self) -> dict[str, str]:
        """Secret variable -> the Secret Manager secret version Vertex jobs read it from."""
        return {"HF_TOKEN": self.hf_token_secret} if self.hf_token_secret else {}

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.region}-aiplatform.googleapis.com"

    @property
    def secrets_parent(self) -> str:
        return f"projects/{self.secret_project or self.project}"

    def problems(self) -> list[str]:
        """What keeps the backend from taking jobs (none: it can)."""
        missing = [] if self.project else ["VERTEX_PROJECT (or PROJECT_ID) is not set"]
        missing += [] if self.image_uri else ["VERTEX_IMAGE_URI is not set"]
        return self.config_errors + missing

    def describe(self) -> dict[str, Any]:
        """What /health shows of it."""
        # GPU type -> the GPU counts per node its machine types come in (the machine table).
        return {"submit": self.submit, "region": self.region, "gpuTypes": {t: sorted(int(n) for n in row["machines"]) for t, row in self.machine_table.items()}}
