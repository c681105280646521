"""The deployed topology on one machine: Pub/Sub and Firestore emulators plus each function as its own
functions-framework process, wired with push subscriptions (`make run-emulators`).

`Emulator` is also what the test fixtures and benchmarks use to start the real emulators: each runs in
its own process group on a free port, is polled until ready, and is stopped by killing the group (the
gcloud wrapper starts a JVM that would otherwise outlive us).

The subscriptions are created with the settings `infra/` deploys them with (ordering, ack deadlines,
retry, dead-lettering), read from the same file Terraform reads: `create_subscriptions`.
"""

from __future__ import annotations

import argparse
import json
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
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# The one description of our subscriptions: infra/terraform/platform/pubsub.tf reads it too.
PUBSUB_SUBSCRIPTIONS = REPO_ROOT / "infra" / "terraform" / "platform" / "pubsub_subscriptions.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, expect: str | None = None, proc: subprocess.Popen[bytes] | None = None) -> None:
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


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting for a reaper don't count)."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():  # not Linux: signal 0 (counts zombies, so this may wait to the bound)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()  # after "(comm)": state ppid pgrp ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop `proc`'s whole process group (SIGTERM, then SIGKILL after `grace`) and wait until no process
    of it is left: the emulators' JVMs are children of the gcloud wrapper, in the same group."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid  # the leader is gone (reaped); its group (started as a new session) may live on
    if pgid == os.getpgrp():  # not started in a group of its own: never signal our own group
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5.0)
        return
    if proc.poll() is None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(pgid, signal.SIGKILL)  # whatever of the group is left (the JVM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 10.0
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


@dataclass
class Emulator:
    kind: str  # "pubsub" | "firestore"
    project: str = "local-project"
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

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

    def start(self, timeout: float = 90.0) -> Emulator:
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
            req = urllib.request.Request(f"http://{self.host}/emulator/v1/projects/{self.project}/databases/(default)/documents", method="DELETE")
        urllib.request.urlopen(req, timeout=10).read()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Each function as its own process; which topic pushes to which is pubsub_subscriptions.json's "push".
FUNCTIONS = ("api", "launcher", "status_sync", "submit", "notify")


def start_function(target: str, port: int, env: dict[str, str], log_dir: Path, *, append: bool = False) -> subprocess.Popen[bytes]:
    """`target` of functions/main.py as its own functions-framework process (http for the api, CloudEvents
    otherwise) in its own process group, its output in `log_dir/<target>.log` (`append`: after a restart's)."""
    log = open(log_dir / f"{target}.log", "ab" if append else "wb")
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


def _seconds(duration: str) -> int:
    """A Terraform / Pub/Sub duration ("10s", "604800s") in whole seconds."""
    if not duration.endswith("s"):
        raise ValueError(f"duration {duration!r} must be in seconds, like '10s'")
    return int(float(duration[:-1]))


def load_subscriptions(path: Path = PUBSUB_SUBSCRIPTIONS) -> dict[str, Any]:
    """The subscriptions and their settings as infra/ deploys them (see that file's description)."""
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def create_subscriptions(bus: Any, settings: Any, endpoints: dict[str, str], spec: dict[str, Any] | None = None) -> dict[str, str]:
    """Create our topics and every subscription on them as `infra/terraform/platform/pubsub.tf` does, from
    the same file: a push subscription per consumed topic to the function's endpoint in `endpoints`
    (function name -> base URL; a function not in it gets none), a pull subscription on each dead-letter
    topic (the emulator, like Pub/Sub, drops what a topic with no subscription receives) and the pull
    subscriptions for readers (rejected submissions). Topic names come from the TOPIC_* settings.
    Returns subscription name -> topic name."""
    spec = spec or load_subscriptions()

    def topic(key: str) -> str:  # a key of local.topics -> its TOPIC_* setting
        return str(getattr(settings, f"topic_{key}"))

    dead_suffix = spec["dead_letter"]["topic_suffix"]
    retention = _seconds(spec["message_retention_duration"])
    created: dict[str, str] = {}
    bus.ensure_topics([topic(k) for k in spec["push"]] + [topic(k) + dead_suffix for k in spec["push"]] + [topic(k) for k in spec["pull"]])
    for key in spec["push"]:
        name = topic(key) + dead_suffix
        bus.ensure_pull_subscription(name, name, ack_deadline_seconds=spec["dead_letter"]["ack_deadline_seconds"], retention_seconds=retention)
        created[name] = name
    for key, sub in spec["pull"].items():
        name = topic(key) + sub["name_suffix"]
        bus.ensure_pull_subscription(topic(key), name, ack_deadline_seconds=sub["ack_deadline_seconds"], retention_seconds=retention)
        created[name] = topic(key)
    for key, sub in spec["push"].items():
        if sub["function"] not in endpoints:
            continue
        name = f"{topic(key)}-{sub['function'].replace('_', '-')}"  # as pubsub.tf names it
        # The push URL names the topic so the CloudEvent's source does too.
        endpoint = f"{endpoints[sub['function']].rstrip('/')}/projects/{bus.project_id}/topics/{topic(key)}"
        bus.ensure_push_subscription(
            topic(key),
            name,
            endpoint,
            dead_letter_topic=topic(key) + dead_suffix,
            max_attempts=spec["max_delivery_attempts"],
            ack_deadline_seconds=sub["ack_deadline_seconds"],
            enable_message_ordering=sub["enable_message_ordering"],
            minimum_backoff_seconds=_seconds(spec["retry_policy"]["minimum_backoff"]),
            maximum_backoff_seconds=_seconds(spec["retry_policy"]["maximum_backoff"]),
        )
        created[name] = topic(key)
    return created


def run_stack(api_port: int, project: str, log_dir: Path | None = None) -> None:
    from shared.settings import Settings

    settings = Settings(GOOGLE_CLOUD_PROJECT=project)
    log_dir = Path(log_dir or settings.stack_log_dir)
    if not log_dir.is_absolute():
        log_dir = REPO_ROOT / log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    emulators = [Emulator("pubsub", project, log_path=log_dir / "pubsub.log"), Emulator("firestore", project, log_path=log_dir / "firestore.log")]

    # The functions and emulators run in their own process groups: on SIGTERM (a supervisor, `timeout`,
    # a benchmark stopping us) unwind through `finally` so they are stopped too, not orphaned. The first
    # signal starts that; any later one (`timeout` signals make's whole group, and make passes it on
    # again) must not interrupt the cleanup, or the emulators' JVMs are left running.
    stopping = False

    def _terminate(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
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

        bus = PubSubBus(project)
        ports = {}
        for target in FUNCTIONS:
            port = api_port if target == "api" else free_port()
            ports[target] = port
            procs.append(start_function(target, port, env, log_dir))
        for port in ports.values():
            _wait_port(port)
        create_subscriptions(bus, settings, {target: f"http://127.0.0.1:{port}" for target, port in ports.items() if target != "api"})
        print(f"api on http://127.0.0.1:{api_port} (logs in {log_dir}); Ctrl-C stops everything", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stopping = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for p in procs:
            stop_group(p)
        for emu in emulators:
            emu.stop()
        print("stopped", flush=True)


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
    parser.add_argument("--log-dir", type=Path, default=None, help="Where the logs go (default: STACK_LOG_DIR, .data/stack).")
    args = parser.parse_args()
    run_stack(args.port, args.project, args.log_dir)


if __name__ == "__main__":
    main()
