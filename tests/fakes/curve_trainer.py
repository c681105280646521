"""A stand-in trainer with a loss curve, for the client and `trainctl` tests (TRAIN_SCRIPT_PATH points here).

Reads `--max_steps` (default 10) among whatever flags it is given and, one step every
`CURVE_TRAINER_INTERVAL` seconds (default 0.05), prints a plain log line and a `PROGRESS` step point with a
falling loss, as `trainer/train.py` does (`started` first, `done` last); exits `CURVE_TRAINER_EXIT`
(default 0). Cheap enough to run many times, slow enough to watch.
"""

import argparse
import json
import os
import sys
import time


def progress(event: str, **fields: object) -> None:
    print("PROGRESS " + json.dumps({"event": event, "time": round(time.time(), 3), **fields}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_steps", type=int, default=10)
    args, _ = parser.parse_known_args()
    interval = float(os.environ.get("CURVE_TRAINER_INTERVAL", "0.05"))
    total = max(args.max_steps, 1)
    progress("started", step=0, total_steps=total, epoch=0.0)
    started = time.monotonic()
    for step in range(1, total + 1):
        time.sleep(interval)
        print(f"training step {step}", flush=True)
        elapsed = time.monotonic() - started
        progress(
            "step",
            step=step,
            total_steps=total,
            epoch=step / total,
            loss=round(2.0 / (1 + 0.3 * step), 5),
            learning_rate=1e-3,
            grad_norm=1.0,
            tokens_per_second=1000.0,
            eta_seconds=round(elapsed / step * (total - step), 2),
        )
    progress("done", step=total, total_steps=total, epoch=1.0)
    return int(os.environ.get("CURVE_TRAINER_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
