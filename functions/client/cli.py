"""`trainctl`: the platform from a terminal.

    trainctl submit FILE [--follow]     trainctl jobs [--status S] [--backend B] [--label k=v] [--limit N]
    trainctl get ID                     trainctl logs ID [-f] [--tail N]
    trainctl watch ID                   trainctl wait ID
    trainctl metrics ID [--png FILE]    trainctl cancel ID          trainctl manifest ID

`--url` / `TRAINCTL_URL` (default the embedded server, http://127.0.0.1:4000), `--token` /
`TRAINCTL_TOKEN`, `--json` on every command for scripts. Exit codes of the commands that follow a job
to its end (`submit --follow`, `logs -f`, `watch`, `wait`): 0 succeeded (or a final dry run), 1 failed,
3 cancelled; 2 is bad input (a bad flag, a file that can't be read, a 4xx from the api, whose field errors
are printed one per line); 4 the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from functions.client.api_client import Client
from functions.client.chart import Series, png_chart, terminal_chart
from functions.client.errors import ApiError, ConnectionFailed
from functions.http.models import JobSummary

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4


def exit_code_for(job: JobSummary) -> int:
    return {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}.get(job.status.value, EXIT_OK)


def _dump(value: Any, out: TextIO) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def progress_bar(job: JobSummary, width: int = 30) -> str:
    """`[#######.......] 12/30  40%  loss 1.234  5,120 tok/s  ETA 00:42  running`"""
    p = job.progress or {}
    step, total = p.get("step"), p.get("total_steps")
    if isinstance(step, int) and isinstance(total, int) and total > 0:
        done = min(step / total, 1.0)
        bar = "#" * round(done * width) + "." * (width - round(done * width))
        head = f"[{bar}] {step}/{total} {done * 100:3.0f}%"
    else:
        head = f"[{'.' * width}] -/-"
    parts = [head]
    if isinstance(p.get("loss"), (int, float)):
        parts.append(f"loss {p['loss']:.4g}")
    if isinstance(p.get("tokens_per_second"), (int, float)):
        parts.append(f"{p['tokens_per_second']:,.0f} tok/s")
    if job.status.value == "running":
        parts.append(f"ETA {_duration(p.get('eta_seconds'))}")
    parts.append(job.status.value)
    return "  ".join(parts)


class Watcher:
    """Draws a job's progress: one bar redrawn in place on a terminal, a line per status change."""

    def __init__(self, out: TextIO, as_json: bool):
        self.out = out
        self.as_json = as_json
        self.tty = out.isatty() and not as_json
        self.status: str | None = None
        self.bar_drawn = False

    def __call__(self, job: JobSummary) -> None:
        if self.as_json:
            self.out.write(json.dumps({"status": job.status.value, "statusReason": job.statusReason, "progress": job.progress}) + "\n")
            self.out.flush()
            return
        if job.status.value != self.status:
            if self.bar_drawn and self.tty:
                self.out.write("\n")
            reason = f" ({job.statusReason})" if job.statusReason else ""
            self.out.write(f"{time.strftime('%H:%M:%S')} {job.id} {self.status or '-'} -> {job.status.value}{reason}\n")
            self.status = job.status.value
            self.bar_drawn = False
        if job.progress:
            if self.tty:
                self.out.write("\r\x1b[2K" + progress_bar(job))
            else:
                self.out.write(progress_bar(job) + "\n")
            self.bar_drawn = True
        self.out.flush()

    def finish(self, job: JobSummary) -> None:
        if self.bar_drawn and self.tty:
            self.out.write("\n")
        if not self.as_json:
            end = job.statusReason or ""
            extra = f"exit code {job.exitCode}" if job.exitCode is not None else ""
            self.out.write(f"{job.id} {job.status.value} {end} {extra}".rstrip() + "\n")
        self.out.flush()


def _watch(client: Client, job_id: str, args: argparse.Namespace, out: TextIO) -> int:
    w = Watcher(out, args.json)
    job = client.wait(job_id, on_change=w, poll_seconds=args.poll)
    w.finish(job)
    return exit_code_for(job)


# ---- commands -------------------------------------------------------------------------------------
def cmd_submit(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    try:
        job = client.submit(args.file, idempotency_key=args.idempotency_key)
    except (OSError, ValueError) as exc:
        print(f"trainctl: can't read {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        _dump(job, out)
    else:
        out.write(job.id + "\n")
        out.flush()
    return _watch(client, job.id, args, out) if args.follow else EXIT_OK


def cmd_jobs(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    jobs = list(client.jobs(status=args.status, backend=args.backend, label=args.label, limit=args.limit))
    if args.json:
        _dump([j.model_dump(mode="json") for j in jobs], out)
        return EXIT_OK
    rows = [("ID", "NAME", "BACKEND", "STATUS", "REASON", "CREATED", "STEP")]
    for j in jobs:
        p = j.progress or {}
        step = f"{p.get('step')}/{p.get('total_steps')}" if p.get("step") is not None else ""
        rows.append((j.id, j.name, j.backend, j.status.value, j.statusReason or "", j.createdAt[:19], step))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return EXIT_OK


def cmd_get(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.get(args.id, logs_limit=1)
    events = list(client.events(args.id))
    tail = list(client.logs(args.id, tail=args.tail))
    if args.json:
        _dump(
            {
                "job": job.model_dump(mode="json", exclude={"logs", "logsNextAfter"}),
                "events": [e.model_dump() for e in events],
                "logs": [l.model_dump() for l in tail],
            },
            out,
        )
        return EXIT_OK
    fields = [
        ("id", job.id),
        ("name", job.name),
        ("backend", job.backend),
        ("status", job.status.value),
        ("reason", job.statusReason),
        ("failure class", job.failureClass.value if job.failureClass else None),
        ("external id", job.externalId),
        ("model", job.modelId),
        ("dataset", job.datasetFile),
        ("output", job.outputDir),
        ("created", job.createdAt),
        ("started", job.startedAt),
        ("finished", job.finishedAt),
        ("exit code", job.exitCode),
        ("error", job.error),
    ]
    for name, value in fields:
        if value is not None and value != "":
            out.write(f"{name + ':':<15}{value}\n")
    if job.progress:
        out.write(f"{'progress:':<15}{progress_bar(job)}\n")
    out.write("\ntimeline:\n")
    for e in events:
        d = e.data
        what = f"{d.get('from', '?')} -> {d.get('to', '?')}" if e.kind == "status" else e.kind
        why = f"  {d['reason']}" if d.get("reason") else ""
        src = f"  ({d['source']})" if d.get("source") else ""
        out.write(f"  {e.at}  {what}{why}{src}\n")
    out.write(f"\nlast {len(tail)} log lines:\n")
    for line in tail:
        out.write(f"  {line.message}\n")
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    for line in client.logs(args.id, follow=args.follow, tail=args.tail):
        if args.json:
            out.write(line.model_dump_json() + "\n")
        else:
            out.write(line.message + "\n")
        out.flush()
    if not args.follow:
        return EXIT_OK
    return exit_code_for(client.summary(args.id))


def cmd_watch(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    return _watch(client, args.id, args, out)


def cmd_wait(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.wait(args.id, poll_seconds=args.poll)
    if args.json:
        _dump(job, out)
    else:
        out.write(f"{job.id} {job.status.value}\n")
    return exit_code_for(job)


def cmd_metrics(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    points = list(client.metrics(args.id))
    if args.json:
        _dump([p.model_dump() for p in points], out)
    loss = Series("loss", [(float(p.step), float(p.loss)) for p in points if p.step is not None and p.loss is not None], (31, 119, 180), "*")
    evals = Series("eval loss", [(float(p.step), float(p.evalLoss)) for p in points if p.step is not None and p.evalLoss is not None], (214, 39, 40), "o")
    if args.png:
        counts = png_chart([loss, evals], args.png)
        if not args.json:
            out.write(f"wrote {args.png}: " + ", ".join(f"{k} {v} points" for k, v in counts.items()) + "\n")
    elif not args.json:
        out.write(terminal_chart([loss, evals]) + "\n")
    return EXIT_OK


def cmd_cancel(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.cancel(args.id)
    if args.json:
        _dump(job, out)
    else:
        out.write(f"{job.id} {job.status.value}\n")
    return EXIT_OK


def cmd_manifest(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    _dump(client.manifest(args.id), out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    def options(default: Any) -> argparse.ArgumentParser:
        # The same options before or after the command; after it they must not reset what came before
        # (argparse lets a subparser's defaults win), hence SUPPRESS there.
        common = argparse.ArgumentParser(add_help=False)
        nothing = default if default is not argparse.SUPPRESS else argparse.SUPPRESS
        common.add_argument("--url", default=nothing, help="api base URL (TRAINCTL_URL; default http://127.0.0.1:4000)")
        common.add_argument("--token", default=nothing, help="bearer token (TRAINCTL_TOKEN)")
        common.add_argument("--json", action="store_true", default=argparse.SUPPRESS if default is argparse.SUPPRESS else False, help="machine-readable output")
        return common

    p = argparse.ArgumentParser(prog="trainctl", description="Submit and follow fine-tuning jobs.", parents=[options(None)])
    sub = p.add_subparsers(dest="command", required=True)
    after_command = options(argparse.SUPPRESS)

    def add(name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, parents=[after_command])
        sp.set_defaults(fn=fn)
        return sp

    sp = add("submit", cmd_submit, "submit a request body (JSON or YAML file)")
    sp.add_argument("file")
    sp.add_argument("--follow", action="store_true", help="then watch it to the end")
    sp.add_argument("--idempotency-key", default=None, help="default: a new key per invocation")
    sp.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    sp = add("jobs", cmd_jobs, "list jobs, newest first")
    sp.add_argument("--status")
    sp.add_argument("--backend")
    sp.add_argument("--label", help="key=value")
    sp.add_argument("--limit", type=int, default=50)
    sp = add("get", cmd_get, "a job, its timeline and its last log lines")
    sp.add_argument("id")
    sp.add_argument("--tail", type=int, default=20)
    sp = add("logs", cmd_logs, "a job's log")
    sp.add_argument("id")
    sp.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    sp.add_argument("--tail", type=int, default=None, help="start with the last N lines")
    for name, fn, text in (("watch", cmd_watch, "a live progress bar until the job ends"), ("wait", cmd_wait, "wait until the job ends")):
        sp = add(name, fn, text)
        sp.add_argument("id")
        sp.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    sp = add("metrics", cmd_metrics, "the loss curve (terminal chart, or --png FILE)")
    sp.add_argument("id")
    sp.add_argument("--png", default=None)
    sp = add("cancel", cmd_cancel, "cancel a job")
    sp.add_argument("id")
    sp = add("manifest", cmd_manifest, "what the launcher created or would create")
    sp.add_argument("id")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", 1) is not None and getattr(args, "limit", 1) < 1:
        print("trainctl: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    client = Client(args.url, args.token)
    try:
        return int(args.fn(client, args, out))
    except ApiError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE if exc.status < 500 else EXIT_UNREACHABLE
    except ConnectionFailed as exc:
        print(f"trainctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `trainctl logs ID | head`: the reader is gone, and that is fine
        sys.stdout = None  # no flush of the dead pipe at exit
        return EXIT_OK
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
