"""A stand-in for `trainer/train.py`, run by the local backend's tests (TRAIN_SCRIPT_PATH points here).

Takes any flags (they are echoed as one `ARGS [...]` line). Behaviour from the environment:
- `FAKE_TRAINER_LINES` (default 3): stdout lines `line i`, then a `PROGRESS {json}` line;
- `FAKE_TRAINER_STDERR` (default 1): stderr lines `warning i`;
- `FAKE_TRAINER_ECHO_ENV`: comma-separated variable names whose values are printed (`NAME=value`), to
  check the child's environment and that the supervisor redacts secret values;
- `FAKE_TRAINER_SLEEP` (default 0): seconds to sleep before exiting (prints `READY` first);
- `FAKE_TRAINER_CHILD_PIDFILE`: start a grandchild (`sleep 60`) in the same process group and write its
  pid there, to check that cancel reaches the whole group;
- `FAKE_TRAINER_IGNORE_TERM=1`: ignore SIGTERM (so only SIGKILL ends it);
- `FAKE_TRAINER_TERM_LINES`: on SIGTERM, print that many lines, then exit 143 (a trainer saving its state
  on the way out, which leaves the server a burst of events to apply while it stops);
- `FAKE_TRAINER_EXIT` (default 0): the exit code; an `--output_dir` whose last part ends in `-exitN`
  exits with N instead (so one server can run jobs that end differently);
- `FAKE_TRAINER_MARKER_DIR`: on start, create `<dir>/<last part of --output_dir>.<pid>`, so a test counts
  the starts of each job (and finds their pids) whatever the server did in between.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time


def main() -> int:
    env = os.environ
    if env.get("FAKE_TRAINER_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    term_lines = int(env.get("FAKE_TRAINER_TERM_LINES", "0"))
    if term_lines:

        def on_term(signum: int, frame: object) -> None:
            for i in range(term_lines):
                print(f"saving {i}", flush=False)
            sys.stdout.flush()
            os._exit(143)

        signal.signal(signal.SIGTERM, on_term)
    output = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--output_dir=")), "")
    key = os.path.basename(output.rstrip("/")) or "job"
    markers = env.get("FAKE_TRAINER_MARKER_DIR")
    if markers:
        with open(os.path.join(markers, f"{key}.{os.getpid()}"), "x"):
            pass
    print("ARGS " + json.dumps(sys.argv[1:]), flush=True)
    for name in filter(None, env.get("FAKE_TRAINER_ECHO_ENV", "").split(",")):
        print(f"{name}={env.get(name, '')}", flush=True)
    for i in range(int(env.get("FAKE_TRAINER_LINES", "3"))):
        print(f"line {i}", flush=True)
    for i in range(int(env.get("FAKE_TRAINER_STDERR", "1"))):
        print(f"warning {i}", file=sys.stderr, flush=True)
    print("PROGRESS " + json.dumps({"step": 1, "total_steps": 1, "loss": 0.5}), flush=True)
    pidfile = env.get("FAKE_TRAINER_CHILD_PIDFILE")
    if pidfile:
        child = subprocess.Popen(["sleep", "60"])
        with open(pidfile, "w") as f:
            f.write(str(child.pid))
    sleep = float(env.get("FAKE_TRAINER_SLEEP", "0"))
    if sleep:
        print("READY", flush=True)
        time.sleep(sleep)
    chosen = re.search(r"-exit(\d+)$", key)
    return int(chosen.group(1)) if chosen else int(env.get("FAKE_TRAINER_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
