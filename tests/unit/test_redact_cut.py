"""Secrets are redacted before text is cut (shared/domain/redaction.py), and the local backend's log lines
go through it: a secret the 16,384-character cut runs through, or one longer than the cut, or one that
runs past what a reader takes of an endless line, never reaches a stored line in part."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from shared.adapters.local_backend import LocalBackend
from shared.adapters.local_runs import MAX_LINE_CHARS
from shared.domain.redaction import redact, redact_cut
from shared.settings import REPO_ROOT
from tests.fakes.jobs import job_from

SECRET = "hf_SECRETvalue_0123456789"
LIMIT = 100


def _leaks(text: str, secret: str, *, shortest: int = 4) -> bool:
    """Any run of `shortest` or more characters of the secret (at the end, where a cut would leave it)."""
    return any(text.endswith(secret[:k]) for k in range(shortest, len(secret) + 1)) or secret in text


@pytest.mark.parametrize(
    "name, text, continued",
    [
        ("straddles the cut", "x" * (LIMIT - 7) + SECRET + "tail", False),
        ("starts at the cut", "x" * LIMIT + SECRET, False),
        ("ends just past the cut", "x" * (LIMIT - len(SECRET) + 1) + SECRET, False),
        ("longer than the cut", "ab" + "S" * (3 * LIMIT) + "end", False),
        ("two, the second at the cut", SECRET + "y" * (LIMIT - 20) + SECRET, False),
        ("a head that ends inside the secret", "x" * 40 + SECRET[:12], True),
    ],
)
def test_no_part_of_a_secret_survives_the_cut(name, text, continued):
    secret = "S" * (3 * LIMIT) if name == "longer than the cut" else SECRET
    out = redact_cut(text, [secret], LIMIT, continued=continued)
    assert len(out) <= LIMIT
    assert not _leaks(out, secret), (name, out[-30:])
    if name != "starts at the cut":
        assert "[red" in out  # the place stays marked


def test_cutting_before_redacting_is_what_leaked():
    """The old order, for contrast: the first half of a secret at the cut no longer matches."""
    text = "x" * (LIMIT - 7) + SECRET
    assert SECRET[:7] in redact(text[:LIMIT], [SECRET])
    assert SECRET[:7] not in redact_cut(text, [SECRET], LIMIT)


def test_text_without_secrets_is_only_cut():
    assert redact_cut("a" * 500, [SECRET, "", None, "abc"], LIMIT) == "a" * LIMIT
    assert redact_cut("short", [SECRET], LIMIT, continued=True) == "short"
    # A head that merely ends like a secret begins (continued) loses that end to the marker.
    assert redact_cut("value hf_SEC", [SECRET], LIMIT, continued=True) == "value [redacted]"


def test_longest_secret_first():
    assert redact("key=abcdefgh", ["abcd", "abcdefgh"]) == "key=[redacted]"


# ---- the local backend: a real child process printing long lines --------------------------------------

PRINTER = """
import os, sys
secret = os.environ["HF_TOKEN"]
cut = int(sys.argv[sys.argv.index("--cut") + 1]) if "--cut" in sys.argv else 16384
sys.stdout.write("a" * (cut - 5) + secret + " after\\n")          # straddles the cut
sys.stdout.write(secret * 3 + "b" * cut + "\\n")                  # starts with secrets, longer than the cut
# Past what a reader takes of one line (4 * (cut + len(secret)) + 4 bytes): the secret runs over its end.
sys.stdout.write("c" * (4 * cut + 4 * len(secret) - 6) + secret + "d" * (2 * cut) + "\\n")
sys.stdout.write("short " + secret + "\\n")
sys.stdout.flush()
"""


class Events:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, message: dict) -> None:
        with self.lock:
            self.messages.append(message)

    def lines(self) -> list[str]:
        return [line["message"] for m in self.messages for line in m.get("logs", [])]


@pytest.mark.parametrize("secret", [SECRET, "L" * 20_000 + "ong"], ids=["short-secret", "secret-longer-than-the-cut"])
def test_local_backend_redacts_before_it_cuts(tmp_path: Path, secret: str):
    from tests.fakes.policy import make_policy

    script = tmp_path / "printer.py"
    script.write_text(PRINTER)
    events = Events()
    backend = LocalBackend(
        python_bin=sys.executable,
        script=script,
        cwd=REPO_ROOT,
        events=events,
        base_env={"PATH": os.environ.get("PATH", "")},
        grace_seconds=5,
        batch_lines=50,
        batch_seconds=0.2,
    )
    body = {"backend": "local", "dataset_file": "/tmp/data.jsonl", "output_dir": "/tmp/out", "hf_token": "hf_placeholder"}
    job, _ = job_from(body, policy=make_policy(local_roots=("/tmp",), local_base=str(REPO_ROOT)))
    backend.submit(job, {"HF_TOKEN": secret})  # longer than a request may carry: the launcher's side of it
    assert backend.wait(job.id, 20) == 0
    lines = events.lines()
    assert len(lines) == 4, [l[:40] for l in lines]
    assert all(len(l) <= MAX_LINE_CHARS for l in lines)
    for line in lines:
        assert not _leaks(line, secret), line[-40:]
        assert secret[:4] not in line.replace("[redacted]", "")
    straddling, leading, far, short = lines
    assert straddling.startswith("a" * (MAX_LINE_CHARS - 5)) and straddling.endswith("[reda")
    assert leading.startswith("[redacted][redacted][redacted]bbb")
    assert far == "c" * MAX_LINE_CHARS
    assert short == "short [redacted]"
