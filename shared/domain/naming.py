"""Names and labels every backend object derives from a job: pure, so the rules are unit-tested once.

Idempotency rests on these functions: the launcher may run `submit` for one job many times (Pub/Sub
redelivery, a crash between "created" and "recorded"), and each attempt must arrive at the same
Kubernetes Job / Secret name and the same Vertex labels, so "already exists" can be recognised and
adopted instead of creating a second GPU job.

- Kubernetes Job name: the job's name as a DNS-1123 label (lowercase `[a-z0-9-]`, starting and ending
  with an alphanumeric) plus `-` and a short suffix of the job id, so two jobs with one name never
  collide; at most 63 characters (the Job controller copies it into a pod label, which is capped at 63).
- Kubernetes Secret name: the same, with `-env`, also at most 63.
- Vertex display name: the job's name (any text, control characters removed) plus the suffix, at most
  128 characters.
- Label values carrying the job id: the id itself when it is a valid label value, else a hash of it,
  so a label selector / list filter finds the job's objects (the full id is also kept in an annotation).
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "training-platform"

# Kubernetes: label keys (selectors for the watcher and for adoption) and annotation keys.
K8S_MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
K8S_COMPONENT_LABEL = "app.kubernetes.io/component"
K8S_JOB_ID_LABEL = "training-platform/job-id"
K8S_JOB_ID_ANNOTATION = "training-platform/job-id"
K8S_JOB_NAME_ANNOTATION = "training-platform/job-name"

# Vertex (GCP) labels: keys and values lowercase `[a-z0-9_-]`, at most 63 characters.
VERTEX_JOB_ID_LABEL = "job_id"
VERTEX_MANAGED_BY_LABEL = "managed-by"

K8S_NAME_MAX = 63
VERTEX_DISPLAY_NAME_MAX = 128
SUFFIX_LEN = 8
SECRET_SUFFIX = "-env"
FALLBACK_BASE = "job"

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_K8S_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GCP_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_ID_SAFE = re.compile(r"^[a-z0-9-]+$")


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def job_suffix(job_id: str) -> str:
    """A short, stable, DNS-safe suffix of the job id: its last 8 alphanumerics when the id is already
    lowercase `[a-z0-9-]` (our uuid4 ids: the tail is random), else the first 8 hex digits of its hash."""
    if _ID_SAFE.match(job_id):
        tail = job_id.replace("-", "")[-SUFFIX_LEN:]
        if len(tail) == SUFFIX_LEN:
            return tail
    return _digest(job_id, SUFFIX_LEN)


def dns_label(text: str, max_len: int = K8S_NAME_MAX) -> str:
    """`text` as a DNS-1123 label fragment: lowercase, runs of other characters become one `-`, no `-`
    at either end, at most `max_len` characters. Empty when nothing usable is left."""
    value = _DASHES.sub("-", _NOT_DNS.sub("-", text.lower()))
    return value[:max_len].strip("-")


def _with_suffix(name: str, job_id: str, tail: str, max_len: int) -> str:
    suffix = job_suffix(job_id)
    room = max_len - len(suffix) - 1 - len(tail)
    base = dns_label(name, room) or FALLBACK_BASE
    return f"{base}-{suffix}{tail}"


def k8s_job_name(name: str, job_id: str) -> str:
    """The Kubernetes Job's name: `<dns(name)>-<suffix>`, at most 63 characters."""
    return _with_suffix(name, job_id, "", K8S_NAME_MAX)


def k8s_secret_name(name: str, job_id: str) -> str:
    """The per-job Secret holding `HF_TOKEN` and `env`: `<dns(name)>-<suffix>-env`, at most 63."""
    return _with_suffix(name, job_id, SECRET_SUFFIX, K8S_NAME_MAX)


def k8s_label_value(value: str) -> str:
    """A Kubernetes label value for `value`: itself when valid (<= 63, alphanumeric ends, `-_.` inside),
    else `h-` and a hash (stable, so selectors still find it)."""
    if len(value) <= 63 and _K8S_LABEL_VALUE.match(value):
        return value
    return "h-" + _digest(value, 40)


def gcp_label_value(value: str) -> str:
    """A GCP resource label value for `value`: itself when valid (lowercase `[a-z0-9_-]`, <= 63), else
    `h-` and a hash."""
    if _GCP_LABEL_VALUE.match(value):
        return value
    return "h-" + _digest(value, 40)


def vertex_display_name(name: str, job_id: str) -> str:
    """The CustomJob's display name: the job's name (control characters removed) and the suffix, <= 128."""
    suffix = job_suffix(job_id)
    base = _CONTROL.sub(" ", name).strip()[: VERTEX_DISPLAY_NAME_MAX - len(suffix) - 1].rstrip() or FALLBACK_BASE
    return f"{base}-{suffix}"


def vertex_label_filter(job_id: str) -> str:
    """The ListCustomJobs filter that finds the CustomJob(s) of one job."""
    return f'labels.{VERTEX_JOB_ID_LABEL}="{gcp_label_value(job_id)}"'


def k8s_job_selector(job_id: str) -> str:
    """The label selector that finds the Kubernetes objects of one job."""
    return f"{K8S_JOB_ID_LABEL}={k8s_label_value(job_id)}"
