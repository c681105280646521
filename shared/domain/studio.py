"""The studio's job spec on `POST /train`, translated into the old request shape and normalised by it.

Pure. The studio (`reference/studio-contract.md`) sends `job_id`, `base_model`, `customization`,
`resources`, `datasets[]`, `artifacts`, `tuning_parameters` and `callbacks`. `normalise_studio_request`
checks each field, builds the equivalent old body (`dataset_file`, `model_id`, trainer flags, ...) and
runs `normalise_request` on it, so one `NormalisedRequest` comes out of both shapes and nothing after
the api can tell them apart. While translating it keeps a map old path -> studio path, so an error the
old normaliser finds (`trainer_args`-style `lora_rank`, `dataset_file[1]`) names the studio's field
(`customization.rank`, `datasets[1].source`). Every studio field is honoured or refused by its path.

Decisions the spec leaves open (the README's "Connecting the studio" table says the same):
- `datasets[i].format`: the trainer's `--dataset_file_format` applies to every source. One explicit
  format for all (or `auto` for the rest, whose extensions agree) renders that format; sources whose
  explicit formats differ but each match the file's own extension render `auto` (the trainer goes by
  each extension); anything else is a 400 naming the formats that can't hold together.
- `tuning_parameters.batch_size` is the global batch: per-device batch x accumulation x data-parallel
  ranks (GPUs per node x nodes: the request's resources, else the backend's defaults). The per-device
  batch is the largest of 8, 4, 2, 1 that divides batch / ranks and keeps per-device tokens
  (x max_length) within MAX_TOKENS_PER_DEVICE; accumulation is the rest.
- The output folder is the platform's: the backend's `BackendRules.studio_output_root/<job_id>`.
- Credentials (`datasets[i].auth`, `artifacts.auth`) travel only as the secret env
  `trainer.flags.CREDENTIALS_ENV`; `callbacks.auth_header` only sealed (`RequestPolicy.seal`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.domain import ssrf
from shared.domain.backend import BackendKind, BackendRules
from shared.domain.callback import Callback
from shared.domain.flag_rendering import key_name, suggest, unique_errors
from shared.domain.json_types import type_name as _type_name
from shared.domain.request import NormalisedRequest, normalise_request, request_fingerprint
from shared.domain.request_policy import RequestPolicy
from shared.domain.resources import Resources, parse_resources
from shared.domain.studio_data import DataSections
from shared.domain.studio_model import ModelSections
from shared.domain.studio_spec import CALLBACK_KEYS, IDEMPOTENCY_PREFIX, JOB_ID_RE, LABEL, MAX_SECRET_CHARS, SHAPE_KEYS, TOP_KEYS, elsewhere
from shared.domain.studio_tuning import TuningSections, data_parallel_ranks
from shared.errors import FieldError, ValidationFailed

# Re-exported: the studio's public face (tests and use cases read them here).
__all__ = ["IDEMPOTENCY_PREFIX", "SHAPE_KEYS", "data_parallel_ranks", "idempotency_key_for", "is_studio_body", "normalise_studio_request"]


def is_studio_body(body: Any) -> bool:
    """The studio's job spec, recognised by its shape (any of its own top-level objects)."""
    return isinstance(body, dict) and any(key in body for key in SHAPE_KEYS)


def idempotency_key_for(job_id: str) -> str:
    return f"{IDEMPOTENCY_PREFIX}{job_id}"


class _Translation(ModelSections, DataSections, TuningSections):
    """One studio body on its way to the old shape: its sections (one mixin each) in the spec's order."""

    # ---- the fields ----------------------------------------------------------------------------------
    def run(self) -> None:
        for key in self.body:
            if key not in TOP_KEYS:
                hint = elsewhere(str(key), "; in the studio's spec set {}") or suggest(str(key), list(TOP_KEYS))
                self.error(key_name(key), f"is not a field of the studio's job spec{hint}")
        self.job()
        self.base_model()
        method = self.customization()
        # The platform picks the backend; an unknown or missing one is the old normaliser's 400.
        default = self.policy.default_backend
        backend = self.policy.backends.get(default) if default is not None else None
        backend = backend or BackendRules(BackendKind(default or "none"))
        resources = self.resources()
        self.datasets()
        self.artifacts(backend)
        self.tuning(resources, backend, method)
        self.callbacks()

    def job(self) -> None:
        value = self.body.get("job_id")
        text = self.text(value, "job_id", required=True, limit=64)
        if text is not None and not JOB_ID_RE.match(text):
            self.error("job_id", "must be the studio's run id: 1-64 letters, digits, '-' or '_' (a UUID)")
            return
        if text is not None:
            self.job_id = text
            self.old["labels"] = {LABEL: text}

    def resources(self) -> Resources:
        value = self.body.get("resources")
        if value is None:
            return Resources()
        self.old["resources"] = value  # as is: its own checks name resources.<key>
        return parse_resources(value, self.policy.gpu_types, [])  # errors reported by the old normaliser

    def callbacks(self) -> None:
        cbs = self.obj(self.body.get("callbacks"), "callbacks", CALLBACK_KEYS, "callbacks") or {}
        url_path = "callbacks.webhook_url"
        url = cbs.get("webhook_url")
        stream = self.stream_url
        if stream is not None:
            if url is not None and stream != url:
                self.error("artifacts.status_stream_url", "must be the same URL as callbacks.webhook_url (the studio sends one URL for both)")
                return
            if url is None:
                url, url_path = stream, "artifacts.status_stream_url"
        header = cbs.get("auth_header")
        if header is not None:
            header = self.text(header, "callbacks.auth_header", limit=MAX_SECRET_CHARS)
            if header is None:
                return
        if url is None:
            if header is not None:
                self.error(url_path, "is required with callbacks.auth_header")
            return
        if not isinstance(url, str):
            self.error(url_path, f"must be a string, got {_type_name(url)}")
            return
        _, problem = ssrf.parse_target(url, self.policy.webhook_allowed_hosts)
        if problem is None and self.policy.check_webhook is not None:
            problem = self.policy.check_webhook(url)
        if problem is not None:
            self.error(url_path, problem)
            return
        if self.policy.seal is None:
            self.error("callbacks", "status callbacks need WEBHOOK_SIGNING_SECRET to be set on the platform (it keeps callbacks.auth_header sealed)")
            return
        self.callback = Callback(url=url, sealed_authorization=self.policy.seal(header) if header is not None else None)


def _translate(err: FieldError, paths: dict[str, str]) -> FieldError:
    """An old-shape error's path, as the studio's: the longest old path that is it or contains it."""
    for old in sorted(paths, key=len, reverse=True):
        field = err.field
        if field == old or field.startswith((old + ".", old + "[")):
            return FieldError(paths[old] + field[len(old) :], err.message)
    return err  # resources.*, backend: the same path in both shapes


def _related(a: str, b: str) -> bool:
    """One path is the other or inside it (`datasets` and `datasets[0].source`)."""
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def normalise_studio_request(body: dict[str, Any], policy: RequestPolicy) -> NormalisedRequest:
    """Validate the studio's job spec and normalise it. Raises ValidationFailed naming studio paths."""
    request_hash = request_fingerprint(body)  # the studio body, secrets included (hashed): same job_id, other body -> 409
    tr = _Translation(body, policy)
    tr.run()
    try:
        req = normalise_request(tr.old, policy, platform_env=tr.platform_env)
    except ValidationFailed as exc:
        theirs = [_translate(e, tr.paths) for e in exc.errors]
        # An old-shape error on a field already refused here (a placeholder source) says nothing new.
        errors = tr.errors + [e for e in theirs if not any(_related(e.field, mine.field) for mine in tr.errors)]
        raise ValidationFailed(unique_errors(errors)) from None
    if tr.errors:
        raise ValidationFailed(tr.errors)
    assert tr.job_id is not None
    return dataclasses.replace(req, request_hash=request_hash, idempotency_key=idempotency_key_for(tr.job_id), callback=tr.callback)
