"""The studio's `datasets[]` and `artifacts` as sources, an output folder and per-source credentials.

Pure; a section of the translation in `shared/domain/studio.py`. Credentials (`datasets[i].auth`,
`artifacts.auth`) travel only as the secret env `trainer.flags.CREDENTIALS_ENV`, never as a flag.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from shared.domain.backend import BackendRules
from shared.domain.json_types import type_name as _type_name
from shared.domain.studio_spec import (
    ARTIFACT_KEYS,
    DATASET_KEYS,
    EXTENSION_FORMATS,
    FORMATS,
    KEY_AUTH,
    MAX_DATASETS,
    MAX_SECRET_CHARS,
    PLACEHOLDER_SOURCE,
    REGION_RE,
    ROLE_ARN_RE,
    ROLE_AUTH,
    TranslationBase,
)
from trainer import flags as trainer_flags


class DataSections(TranslationBase):
    """`datasets[]` -> `dataset_file` (+ format, credentials); `artifacts` -> output, log and upload."""

    def datasets(self) -> None:
        value = self.body.get("datasets")
        if value is None:
            self.error("datasets", "is required: at least one {source, format} to train on")
            self.old["dataset_file"] = [PLACEHOLDER_SOURCE]
            return
        if not isinstance(value, list) or not value:
            self.error("datasets", "must be a list of at least one {source, format}" if isinstance(value, list) else f"must be a list, got {_type_name(value)}")
            self.old["dataset_file"] = [PLACEHOLDER_SOURCE]
            return
        if len(value) > MAX_DATASETS:
            self.error("datasets", f"must have at most {MAX_DATASETS} items")
            self.old["dataset_file"] = [PLACEHOLDER_SOURCE]
            return
        sources: list[str] = []
        formats: list[str | None] = []  # None: auto
        creds: list[dict[str, str] | None] = []
        self.paths["dataset_file"] = "datasets"
        for i, item in enumerate(value):
            path = f"datasets[{i}]"
            self.paths[f"dataset_file[{i}]"] = f"{path}.source"
            entry = self.obj(item, path, DATASET_KEYS, "a dataset")
            if entry is None:
                if item is None:
                    self.error(path, "must be an object {source, format}")
                sources.append(PLACEHOLDER_SOURCE)
                formats.append(None)
                creds.append(None)
                continue
            source = self.text(entry.get("source"), f"{path}.source", required=True)
            sources.append(source if source is not None else PLACEHOLDER_SOURCE)
            fmt = self.choice(entry.get("format"), f"{path}.format", FORMATS) if entry.get("format") is not None else "auto"
            formats.append(None if fmt in (None, "auto") else fmt)
            creds.append(self.auth(entry.get("auth"), f"{path}.auth", [source] if source is not None else []))
        self.old["dataset_file"] = sources
        self.file_format(sources, formats)
        if any(c is not None for c in creds):
            self.dataset_creds = creds

    def file_format(self, sources: list[str], formats: list[str | None]) -> None:
        """One `--dataset_file_format` for every source (the trainer's rule): see the module docstring."""
        explicit = {f for f in formats if f is not None}
        if not explicit:
            return
        by_ext = [EXTENSION_FORMATS.get(posixpath.splitext(s.rstrip("/"))[1].lower()) for s in sources]
        if len(explicit) == 1:
            (only,) = explicit
            if all(f is not None or ext in (None, only) for f, ext in zip(formats, by_ext)):
                self.flag("dataset_file_format", only, f"datasets[{formats.index(only)}].format")
                return
        if all(f is None or f == ext for f, ext in zip(formats, by_ext)):
            return  # auto: each source is read by its own extension, which is what each one asked for
        firsts = ", ".join(f"datasets[{i}] is {f or 'auto'}" for i, f in enumerate(formats))
        for i, (f, ext) in enumerate(zip(formats, by_ext)):
            if f is not None and f != ext:
                self.error(
                    f"datasets[{i}].format",
                    f"the trainer reads every source in one format unless each goes by its file extension ({firsts}): "
                    "give every dataset the same format, or use auto with .jsonl, .csv or .parquet names",
                )

    def auth(self, value: Any, path: str, destinations: list[str]) -> dict[str, str] | None:
        """Per-source AWS credentials: keys (+ session token, region) or a role to assume (+ region).
        The values are secrets: no message shows one."""
        if value is None:
            return None
        keys = KEY_AUTH + ("role_arn",)
        auth = self.obj(value, path, keys, "auth")
        if auth is None:
            return None
        before = len(self.errors)
        non_s3 = [d for d in destinations if not d.startswith("s3://")]
        if non_s3:
            self.error(path, "applies to s3:// locations only (credentials are AWS ones)")
        out: dict[str, str] = {}
        for key, item in auth.items():
            text = self.text(item, f"{path}.{key}", required=True, limit=MAX_SECRET_CHARS)
            if text is not None:
                out[key] = text
        if "role_arn" in auth:
            mixed = [k for k in auth if k not in ROLE_AUTH]
            if mixed:
                self.error(path, f"gives role_arn and {', '.join(mixed)}: give keys (aws_access_key_id, aws_secret_access_key) or a role_arn, not both")
            elif "role_arn" in out and not ROLE_ARN_RE.match(out["role_arn"]):
                self.error(f"{path}.role_arn", "must be an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")
        else:
            for key in ("aws_access_key_id", "aws_secret_access_key"):
                if key not in auth:
                    self.error(f"{path}.{key}", "is required (or give role_arn instead of keys)")
        if "aws_region" in out and not REGION_RE.match(out["aws_region"]):
            self.error(f"{path}.aws_region", "must be an AWS region name such as us-east-1")
        return out if len(self.errors) == before else None

    def artifacts(self, backend: BackendRules) -> None:
        arts = self.obj(self.body.get("artifacts"), "artifacts", ARTIFACT_KEYS, "artifacts")
        if arts is None:
            if self.body.get("artifacts") is None:
                self.error("artifacts", "is required: artifacts.output_uri is where the trained model goes")
            arts = {}
        output = self.uri(arts.get("output_uri"), "artifacts.output_uri", required="artifacts" in self.body and isinstance(self.body["artifacts"], dict))
        self.flag("upload_output_to", output, "artifacts.output_uri")
        log_uri = self.uri(arts.get("log_uri"), "artifacts.log_uri")
        self.flag("log_uri", log_uri, "artifacts.log_uri")
        self.stream_url = arts.get("status_stream_url")
        artifact_creds = self.auth(arts.get("auth"), "artifacts.auth", [u for u in (output, log_uri) if u is not None])
        dataset_creds = self.dataset_creds
        if dataset_creds is not None or artifact_creds is not None:
            datasets_count = len(self.old.get("dataset_file") or [])
            doc = {"datasets": dataset_creds or [None] * datasets_count, "artifacts": artifact_creds}
            where = "artifacts.auth" if dataset_creds is None else f"datasets[{next(i for i, c in enumerate(dataset_creds) if c)}].auth"
            self.platform_env[trainer_flags.CREDENTIALS_ENV] = (json.dumps(doc, separators=(",", ":"), sort_keys=True), where)
        # The platform picks the output folder: one per studio run, in a place the backend's rules allow.
        root = backend.studio_output_root
        if root is None:
            self.error("backend", f"the {backend.kind} backend has no output folder for the studio's runs configured")
            root = "/tmp/studio"
        self.old["output_dir"] = posixpath.join(root, self.job_id or "invalid-job-id")
        self.paths["output_dir"] = "output_dir"
