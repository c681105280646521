"""The reference page's example body (../shared/reference/studio-contract.md), as the studio's back end
produced it (pasted: CI doesn't carry ../shared), for the tests to start from; `example()` gives a fresh
deep copy to change."""

from __future__ import annotations

import copy
from typing import Any

JOB_ID = "6a248301-0606-494f-8f45-c195e36937fb"
HF_TOKEN = "hf_dummy_token"
JOB_TOKEN = "1f745be8e2f285f8e8c0435486e6beafe27b73693c0b03cab23bcdc5500887e8"
AUTH_HEADER = f"Bearer {JOB_TOKEN}"

EXAMPLE: dict[str, Any] = {
    "job_id": JOB_ID,
    "base_model": {
        "provider": "huggingface",
        "model_name": "meta-llama/Llama-3.2-3B-Instruct",
        "revision": "main",
        "auth_token": HF_TOKEN,
        "weights_url": None,
    },
    "customization": {
        "method": "qlora",
        "rank": 32,
        "target_modules": ["q_proj", "v_proj"],
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "trainable_layers": ["decoder.layers.0"],
        "precision": "bf16",
        "qlora": {"use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16"},
        "peft": {"use": True, "config": {"task_type": "CAUSAL_LM"}},
    },
    "resources": {"gpus": 4, "gpu_type": "A100", "cpus": 16, "memory_gb": 128, "max_duration_minutes": 720},
    "datasets": [{"source": "s3://studio-data/users/u1/projects/p1/ingestion/chat.jsonl", "format": "jsonl"}],
    "artifacts": {
        "log_uri": f"s3://studio-data/users/u1/projects/p1/logs/{JOB_ID}/",
        "status_stream_url": f"https://studio.example/api/training/webhooks/{JOB_ID}",
        "output_uri": "s3://studio-models/lora-refinement-1796113031796",
    },
    "tuning_parameters": {
        "learning_rate": 0.0002,
        "batch_size": 64,
        "num_epochs": 3,
        "warmup_ratio": 0.1,
        "gradient_checkpointing": True,
        "max_sequence_length": 4096,
    },
    "callbacks": {"webhook_url": f"https://studio.example/api/training/webhooks/{JOB_ID}", "auth_header": AUTH_HEADER},
}


def example() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)
