"""The house rules that are about files rather than behaviour (issue 13; docs/architecture.md).

- No test module imports another test module: shared helpers live in `tests/fakes/` (a test module
  that imports another runs that module's fixtures and tests' imports too, and couples two files
  that change for different reasons). Checked on the source text, so an import inside a string (a
  script a test runs in a subprocess) counts as well.
- No Python module in `shared/` or `functions/` is over MAX_LINES lines (`wc -l`): a module that fits
  in a head. NOTE for the coordinator: this one fails until every split of issue 13 has landed; it
  names the modules still over the limit.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
# `from tests.integration.test_x import ...`, `import tests.unit.test_x`, `from .test_x import ...`
TEST_MODULE_IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:tests(?:\.\w+)*\.test_\w+|\.+test_\w+)\b", re.M)


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_the_pattern_sees_every_form_of_import() -> None:
    seen = [
        "from tests.integration.test_api_jobs import submit",
        "    from tests.integration.test_kubernetes_backend import make_backend as make_k8s",
        "import tests.unit.test_status",
        "from .test_local_backend import Events",
    ]
    fine = ["from tests.fakes.backends import Events", "from tests.integration.conftest import RecordingBus", "from shared.domain import test_kinds"]
    assert all(TEST_MODULE_IMPORT.search(line) for line in seen)
    assert not any(TEST_MODULE_IMPORT.search(line) for line in fine)


def test_no_test_module_imports_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in python_files("tests")
        for match in TEST_MODULE_IMPORT.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "move the shared helpers into tests/fakes/:\n" + "\n".join(offenders)


def test_no_module_in_shared_or_functions_is_over_the_limit() -> None:
    # Fails until every split of issue 13 has landed (see the module docstring); not xfailed on purpose.
    too_long = {
        str(path.relative_to(ROOT)): n for path in python_files("shared", "functions") if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"
