"""The studio's `POST /train` body as an OpenAPI schema (documentation and the fuzzer's input; the rules
are `shared.domain.studio`'s, which refuses with a 400 naming the path whatever this admits wrongly)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

_SECRET = "A secret: it reaches the trainer only, never the store, a response, a log or a manifest."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StudioBaseModel(_Strict):
    provider: Literal["huggingface", "meta", "nemo"] | None = Field(None, description="nemo is refused (400).")
    model_name: StrictStr | None = Field(None, description="Hub id (or a model folder) -> the model.")
    revision: StrictStr | None = Field(None, description="Hub revision -> --model_revision (main: the default).")
    auth_token: StrictStr | None = Field(None, description=f"Hub token -> the secret HF_TOKEN. {_SECRET}")
    weights_url: StrictStr | None = Field(None, description="gs:// or s3:// folder of weights in the hub's format: loaded instead of model_name.")


class StudioCustomization(_Strict):
    method: Literal["qlora", "lora", "full", "new-transformer"] | None = Field(None, description="new-transformer is refused (400).")
    rank: int | None = Field(None, description="-> --lora_rank (not with full).")
    target_modules: list[StrictStr] | None = Field(None, description="-> --lora_target_modules.")
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    trainable_layers: list[StrictStr] | None = Field(None, description="-> --trainable_layers (decoder.layers.N: the model's own layer N).")
    precision: Literal["bf16", "fp16", "fp32"] | None = None
    qlora: dict[str, Any] | None = Field(None, description="use_double_quant, bnb_4bit_compute_dtype, bnb_4bit_quant_type (qlora only).")
    peft: dict[str, Any] | None = Field(
        None,
        description='{"use": bool, "config": {...}}: config keys our LoRA config has (task_type CAUSAL_LM, r, lora_alpha, lora_dropout, target_modules, bias, use_rslora).',
    )


class StudioDataset(_Strict):
    source: StrictStr = Field(description="s3:// or gs:// (a path on the local backend).")
    format: Literal["jsonl", "csv", "parquet", "auto"] | None = None
    auth: dict[str, StrictStr] | None = Field(
        None, description=f"{{aws_access_key_id, aws_secret_access_key, aws_session_token?, aws_region?}} or {{role_arn, aws_region?}}. {_SECRET}"
    )


class StudioArtifacts(_Strict):
    output_uri: StrictStr | None = Field(None, description="gs:// or s3:// destination of the trained adapter / model.")
    log_uri: StrictStr | None = Field(None, description="gs:// or s3:// folder for train.log and run_summary.json (every few minutes and at the end).")
    status_stream_url: StrictStr | None = Field(None, description="The same URL as callbacks.webhook_url.")
    auth: dict[str, StrictStr] | None = Field(None, description=f"Credentials for output_uri and log_uri (the shapes of datasets[].auth). {_SECRET}")


class StudioCallbacks(_Strict):
    webhook_url: StrictStr | None = Field(None, description='Where status callbacks go: POST {"status", "log"}.')
    auth_header: StrictStr | None = Field(None, description=f"The exact Authorization value of each callback. {_SECRET}")


class StudioTrainRequest(_Strict):
    """The studio's job spec (recognised by its shape); see the README's "Connecting the studio"."""

    model_config = ConfigDict(extra="forbid", strict=True, title="StudioTrainRequest")
    job_id: StrictStr = Field(description="The studio's run id: the idempotency key and the label studio_job_id.")
    base_model: StudioBaseModel
    customization: StudioCustomization | None = None
    resources: dict[str, Any] | None = Field(None, description="gpus, gpu_type, nodes, cpus, memory_gb, max_duration_minutes (see Resources).")
    datasets: list[StudioDataset] = Field(min_length=1)
    artifacts: StudioArtifacts
    tuning_parameters: dict[str, Any] | None = Field(
        None,
        description="learning_rate, batch_size (global), num_epochs, warmup_ratio, gradient_checkpointing, max_sequence_length, or any trainer flag by name.",
    )
    callbacks: StudioCallbacks | None = None
