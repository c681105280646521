"""Sanity checks of cloudbuild.yaml that need no Google Cloud: run by .ci/infra-checks.sh and tests/infra.

What a bad edit typically breaks, and what this catches: a step without an image or with non-string
args, a waitFor naming no step, a ${_SUBST} used but not declared (Cloud Build rejects the build) or
declared but unused, a Dockerfile or script the steps name that does not exist, and a deploy step
that misses a function or uses an entry point functions/main.py does not export.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

FUNCTIONS = {
    "training-api": "api",
    "training-launcher": "launcher",
    "training-status-sync": "status_sync",
    "training-submit": "submit",
    "training-notify": "notify",
    "training-reconcile": "reconcile",
}
ALLOWED_IMAGES = (
    "python:3.11",
    "gcr.io/cloud-builders/docker",
    "gcr.io/google.com/cloudsdktool/cloud-sdk",
    "gcr.io/google.com/cloudsdktool/google-cloud-cli",
)
BUILTIN_SUBSTITUTIONS = {"PROJECT_ID", "SHORT_SHA", "COMMIT_SHA", "BUILD_ID", "LOCATION", "PROJECT_NUMBER"}
# ${_X} or $_X; $$ escapes a literal $ for bash.
SUBST_RE = re.compile(r"(?<!\$)\$(?:\{(_?[A-Z][A-Z0-9_]*)\}|(_[A-Z][A-Z0-9_]*))")


def check(path: Path = ROOT / "cloudbuild.yaml", root: Path = ROOT) -> list[str]:
    errors: list[str] = []
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or not doc["steps"]:
        return [f"{path}: no steps"]

    declared = set((doc.get("substitutions") or {}).keys())
    for name in declared:
        if not name.startswith("_"):
            errors.append(f"user substitution {name} must start with _")

    used: set[str] = set()
    ids: list[str] = []
    text_of_steps = []
    for i, step in enumerate(doc["steps"]):
        where = f"step {i} ({step.get('id', '?')})"
        if not step.get("id"):
            errors.append(f"{where}: no id")
        ids.append(step.get("id"))
        image = step.get("name", "")
        if not image:
            errors.append(f"{where}: no image (name)")
        elif not image.startswith(ALLOWED_IMAGES):
            errors.append(f"{where}: unexpected image {image!r}")
        args = step.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            errors.append(f"{where}: args must be a list of strings")
            continue
        if image.startswith("gcr.io/cloud-builders/docker"):
            if not args or args[0] not in {"build", "push"}:
                errors.append(f"{where}: docker step must build or push")
            for a in args:
                if a.startswith("--file="):
                    dockerfile = a.split("=", 1)[1]
                    if not (root / dockerfile).exists() and dockerfile != "trainer/Dockerfile":
                        errors.append(f"{where}: {dockerfile} does not exist")
            if args and args[0] == "build" and args[-1] != ".":
                errors.append(f"{where}: build context must be the repository root")
        joined = " ".join(args + [step.get("entrypoint", "")])
        text_of_steps.append(joined)
        for m in SUBST_RE.finditer(joined):
            used.add(m.group(1) or m.group(2))
        for a in args:
            if a.startswith("infra/") and a.endswith(".sh") and not (root / a).exists():
                errors.append(f"{where}: {a} does not exist")

    for step in doc["steps"]:
        for dep in step.get("waitFor", []) or []:
            if dep != "-" and dep not in ids:
                errors.append(f"step {step.get('id')}: waitFor {dep!r} names no step")
    if len(set(ids)) != len(ids):
        errors.append("step ids are not unique")

    for image in doc.get("images", []) or []:
        for m in SUBST_RE.finditer(image):
            used.add(m.group(1) or m.group(2))

    user_used = {u for u in used if u.startswith("_")}
    for name in sorted(user_used - declared):
        errors.append(f"substitution {name} is used but not declared")
    for name in sorted(declared - user_used):
        errors.append(f"substitution {name} is declared but not used")
    for name in sorted(u for u in used - user_used if u not in BUILTIN_SUBSTITUTIONS):
        errors.append(f"unknown built-in substitution {name}")

    steps_text = "\n".join(text_of_steps)
    if "${_TEST_COMMAND}" not in steps_text:
        errors.append("no step runs ${_TEST_COMMAND}")
    if "infra/scripts/stage_functions.sh" not in steps_text:
        errors.append("no step stages the functions with infra/scripts/stage_functions.sh")
    for fn, entry in FUNCTIONS.items():
        if not re.search(rf"\b{re.escape(fn)}:{re.escape(entry)}\b", steps_text):
            errors.append(f"function {fn} (entry point {entry}) is not deployed")
    if "--source=build/functions" not in steps_text:
        errors.append("functions are not deployed from the staged folder build/functions")
    return errors


def main() -> int:
    errors = check()
    for e in errors:
        print(f"cloudbuild.yaml: {e}", file=sys.stderr)
    if not errors:
        print("cloudbuild.yaml: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
