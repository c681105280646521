"""The deployed topology on one machine: Pub/Sub and Firestore emulators plus each function as its own
functions-framework process, wired with push subscriptions (`make run-emulators`).

`Emulator` is also what the test fixtures and benchmarks use to start the real emulators: each runs in
its own process group on a free port, is polled until ready, and is stopped by killing the group (the
gcloud wrapper starts a JVM that would otherwise outlive us).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, expect: str | None = None, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read().decode(errors="replace")
                if expect is None or expect in body:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # The JVM child may still be alive in the group: make sure the whole group is gone.
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


@dataclass
class Emulator:
    kind: str  # "pubsub" | "firestore"
    project: str = "local-project"
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env_var(self) -> str:
        return "PUBSUB_EMULATOR_HOST" if self.kind == "pubsub" else "FIRESTORE_EMULATOR_HOST"

    def command(self) -> list[str]:
        if self.kind == "pubsub":
            return ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={self.host}", f"--project={self.project}", "--quiet"]
        return ["gcloud", "emulators", "firestore", "start", f"--host-port={self.host}", "--quiet"]

    def start(self, timeout: float = 90.0) -> "Emulator":
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            wait_http(f"http://{self.host}/", timeout, expect="Ok", proc=self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def reset(self) -> None:
        """Wipe everything the emulator holds."""
        if self.kind == "pubsub":
            req = urllib.request.Request(f"http://{self.host}/reset", method="POST")
        else:
            req = urllib.request.Request(
                f"http://{self.host}/emulator/v1/projects/{self.project}/databases/(default)/documents", method="DELETE"
            )
        urllib.request.urlopen(req, timeout=10).read()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


FUNCTIONS = (
    # (target, topic it is pushed from or None for HTTP)
    ("api", None),
    ("launcher", "train-requests"),
    ("status_sync", "training-events"),
    ("submit", "train-submissions"),
)


def start_function(target: str, port: int, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{target}.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            f"--source={REPO_ROOT / 'functions' / 'main.py'}",
            f"--target={target}",
            f"--signature-type={'http' if target == 'api' else 'cloudevent'}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        cwd=str(REPO_ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    return proc


def run_stack(api_port: int, project: str) -> None:
    # The functions and emulators run in their own process groups: on SIGTERM (a supervisor, `timeout`,
    # a benchmark stopping us) unwind through `finally` so they are stopped too, not orphaned.
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    log_dir = REPO_ROOT / ".data" / "stack"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    emulators = [Emulator("pubsub", project, log_path=log_dir / "pubsub.log"), Emulator("firestore", project, log_path=log_dir / "firestore.log")]
    try:
        for emu in emulators:
            emu.start()
            print(f"{emu.kind} emulator on {emu.host}", flush=True)
        env = {
            **os.environ,
            "PUBSUB_EMULATOR_HOST": emulators[0].host,
            "FIRESTORE_EMULATOR_HOST": emulators[1].host,
            "GOOGLE_CLOUD_PROJECT": project,
            "STORE_KIND": "firestore",
            "BUS_KIND": "pubsub",
        }
        os.environ.update({k: env[k] for k in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")})
        from shared.adapters.pubsub_bus import PubSubBus
        from shared.settings import Settings

        settings = Settings(GOOGLE_CLOUD_PROJECT=project)
        bus = PubSubBus(project)
        topics = [settings.topic_train_requests, settings.topic_training_events, settings.topic_train_submissions]
        bus.ensure_topics(topics + [f"{t}-dead-letter" for t in topics] + [settings.topic_train_submissions_rejected])
        ports = {}
        for target, topic in FUNCTIONS:
            port = api_port if target == "api" else free_port()
            ports[target] = port
            procs.append(start_function(target, port, env, log_dir))
        for port in ports.values():
            _wait_port(port)
        for target, topic in FUNCTIONS:
            if topic is None:
                continue
            # The push URL names the topic so the CloudEvent's source does too.
            endpoint = f"http://127.0.0.1:{ports[target]}/projects/{project}/topics/{topic}"
            bus.ensure_push_subscription(topic, f"{target}-push", endpoint, dead_letter_topic=f"{topic}-dead-letter")
        print(f"api on http://127.0.0.1:{api_port} (logs in {log_dir}); Ctrl-C stops everything", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            stop_group(p)
        for emu in emulators:
            emu.stop()


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"port {port} not open")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4000")))
    parser.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", "local-project"))
    args = parser.parse_args()
    run_stack(args.port, args.project)


if __name__ == "__main__":
    main()
