"""The studio's `base_model` and `customization` (method, LoRA, QLoRA, PEFT, precision) as trainer flags.

Pure; a section of the translation in `shared/domain/studio.py` (see `studio_spec.TranslationBase`).
"""

from __future__ import annotations

import json
from typing import Any

from shared.domain.flag_rendering import check_text
from shared.domain.json_types import type_name as _type_name
from shared.domain.studio_spec import (
    BASE_MODEL_KEYS,
    CUSTOMIZATION_KEYS,
    MAX_SECRET_CHARS,
    METHODS,
    PEFT_CONFIG_KEYS,
    PEFT_KEYS,
    PRECISIONS,
    PROVIDERS,
    QLORA_KEYS,
    TranslationBase,
    same,
)
from trainer import flags as trainer_flags


class ModelSections(TranslationBase):
    """`base_model` -> `model_id` / `model_revision` / `hf_token`; `customization` -> the method's flags."""

    def base_model(self) -> None:
        base = self.obj(self.body.get("base_model"), "base_model", BASE_MODEL_KEYS, "base_model")
        if base is None:
            if "base_model" not in self.body or self.body["base_model"] is None:
                self.error("base_model", "is required: base_model.model_name names the model to fine-tune")
            return
        provider = base.get("provider")
        if provider == "nemo":
            self.error("base_model.provider", "nemo isn't supported: the platform trains models in the Hugging Face format (huggingface or meta)")
        elif provider is not None:
            self.choice(provider, "base_model.provider", PROVIDERS)
        name = self.text(base.get("model_name"), "base_model.model_name")
        weights = self.uri(base.get("weights_url"), "base_model.weights_url")
        revision = self.text(base.get("revision"), "base_model.revision", limit=256)
        if weights is not None:
            # The weights are loaded from there; the name is kept with the job so the studio's run shows it.
            self.flag("model_id", weights, "base_model.weights_url")
            if name is not None and check_text(name, "base_model.model_name", [], limit=256):
                self.old.setdefault("labels", {})["studio_model_name"] = name
            if revision not in (None, "main"):
                self.error("base_model.revision", "names a revision of a hub model; base_model.weights_url is a folder of weights: drop one of them")
        elif name is not None:
            self.flag("model_id", name, "base_model.model_name")
            # `main` is the hub's default (and the studio's): not rendered, so a model folder (the hub id
            # may name one) is not refused for having a revision.
            self.flag("model_revision", None if revision == "main" else revision, "base_model.revision")
        elif base.get("model_name") is None and base.get("weights_url") is None:
            self.error("base_model.model_name", "is required (or base_model.weights_url)")
        token = base.get("auth_token")
        if token is not None:
            token = self.text(token, "base_model.auth_token", limit=MAX_SECRET_CHARS)
            if token is not None:
                self.old["hf_token"] = token
                self.paths["hf_token"] = "base_model.auth_token"

    def customization(self) -> str:
        """The fine-tuning fields; returns the effective method (the trainer's default when unset)."""
        cust = self.obj(self.body.get("customization"), "customization", CUSTOMIZATION_KEYS, "customization") or {}
        default = str(trainer_flags.BY_NAME["method"].default)
        raw = cust.get("method")
        if raw == "new-transformer":
            self.error("customization.method", "new-transformer isn't supported: the platform fine-tunes an existing base model (qlora, lora or full)")
            method = None
        else:
            method = self.choice(raw, "customization.method", METHODS) if raw is not None else None
        self.flag("method", method, "customization.method")
        effective = method or (default if raw is None else None)
        lora = effective in ("lora", "qlora")
        if cust.get("rank") is not None and effective == "full":
            self.error("customization.rank", "full fine-tuning has no LoRA rank: drop rank, or use method lora or qlora")
        elif effective != "full":
            self.flag("lora_rank", cust.get("rank"), "customization.rank")
        self.flag("lora_target_modules", cust.get("target_modules"), "customization.target_modules")
        self.flag("lora_alpha", cust.get("lora_alpha"), "customization.lora_alpha")
        self.flag("lora_dropout", cust.get("lora_dropout"), "customization.lora_dropout")
        self.flag("trainable_layers", cust.get("trainable_layers"), "customization.trainable_layers")
        precision = cust.get("precision")
        if precision is not None:
            chosen = self.choice(precision, "customization.precision", list(PRECISIONS))
            flag = PRECISIONS[chosen] if chosen is not None else None
            if flag is not None:
                self.flag(flag, True, "customization.precision")
        qlora = self.obj(cust.get("qlora"), "customization.qlora", list(QLORA_KEYS), "customization.qlora")
        if qlora and effective is not None and effective != "qlora":
            self.error("customization.qlora", f"applies only to method qlora (method is {effective}): drop it or use qlora")
        elif qlora:
            for key, flag in QLORA_KEYS.items():
                self.flag(flag, qlora.get(key), f"customization.qlora.{key}")
        peft = self.obj(cust.get("peft"), "customization.peft", PEFT_KEYS, "customization.peft")
        if peft:
            self.peft(peft, cust, effective, lora)
        return effective or default

    def peft(self, peft: dict[str, Any], cust: dict[str, Any], method: str | None, lora: bool) -> None:
        use = peft.get("use")
        if use is not None and not isinstance(use, bool):
            self.error("customization.peft.use", f"must be a boolean, got {_type_name(use)}")
        elif use is False and lora:
            self.error("customization.peft.use", f"false contradicts customization.method {method}, a PEFT (LoRA) method: set peft.use true, or method full")
        elif use is True and method == "full":
            self.error(
                "customization.peft.use",
                "true contradicts customization.method full, which trains every weight (no adapter): set peft.use false, or method lora or qlora",
            )
        config = self.obj(peft.get("config"), "customization.peft.config", list(PEFT_CONFIG_KEYS), "our LoRA config (customization.peft.config)")
        if not config:
            return
        same_as = {"r": "rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout", "target_modules": "target_modules"}
        for key, value in config.items():
            path = f"customization.peft.config.{key}"
            if value is None:
                continue
            if key == "task_type":
                if value != "CAUSAL_LM":
                    self.error(path, "must be CAUSAL_LM: the platform fine-tunes causal language models")
                continue
            if method == "full":
                self.error(path, "configures LoRA, and customization.method is full: drop it, or use method lora or qlora")
                continue
            twin = same_as.get(key)
            if twin is not None and cust.get(twin) is not None:
                if not same(cust[twin], value):
                    self.error(path, f"must agree with customization.{twin} ({json.dumps(cust[twin])}), got {json.dumps(value)}: give one")
                continue  # the customization field is already set
            flag = PEFT_CONFIG_KEYS[key]
            assert flag is not None
            self.flag(flag, value, path)
