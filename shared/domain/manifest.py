"""`GET /jobs/{id}/manifest`: what the launcher created, or would create on a dry run, as a list of objects.

Pure. A Kubernetes submission is stored as a `List` of objects (the Secret, values redacted, then the
Job); a Vertex one as its CustomJob spec; a local one is the process it started (command and flags).
A job not launched yet has no objects.
"""

from __future__ import annotations

from typing import Any

from shared.domain.backend import BackendRules
from shared.domain.job import Job


def manifest_view(job: Job, rules: BackendRules | None = None) -> dict[str, Any]:
    """`rules`: the job's backend's (a stored object without a `kind` is shown as its `manifest_kind`)."""
    manifest = job.manifest
    objects: list[dict[str, Any]]
    if isinstance(manifest, dict) and manifest.get("kind") == "List" and isinstance(manifest.get("items"), list):
        objects = list(manifest["items"])
    elif isinstance(manifest, dict):
        kind = rules.manifest_kind if rules is not None else None
        objects = [{"kind": kind, **manifest} if kind and "kind" not in manifest else manifest]
    elif job.command is not None:
        objects = [{"kind": "LocalProcess", "command": job.command, "args": list(job.args)}]
    else:
        objects = []
    return {"backend": str(job.backend), "dryRun": job.dry_run, "objects": objects}
