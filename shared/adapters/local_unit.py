"""The local backend as a unit: its settings (`LocalSettings`), rules (`shared.domain.backends.local`)
and adapter (`local_backend.LocalBackend`, the supervisor of `train.py` processes on this machine),
whose events it publishes itself through `BuildContext.events` as `"source": "local"`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.adapters.unit import BackendUnit, BuildContext, RulesContext
from shared.domain.backends.local import LOCAL, LocalRules
from shared.ports import Backend
from shared.settings_group import REPO_ROOT, SettingsGroup


class LocalSettings(SettingsGroup):
    """The local backend: the Python and script it runs, and the folders a job may use."""

    model_config = SettingsConfigDict(env_prefix="LOCAL_")

    python_bin: str = Field(
        sys.executable,
        validation_alias="PYTHON_BIN",
        description="Local backend: the Python that runs the trainer (default: the interpreter running the service, "
        "so the venv's torch is used; the old service used `python3`).",
        json_schema_extra={"readme_default": "the service's Python"},
    )
    train_script_path: str = Field(
        "trainer/train.py", validation_alias="TRAIN_SCRIPT_PATH", description="Local backend: trainer script, relative paths resolved from the repo root."
    )
    allowed_roots: str | None = Field(
        None, description="Local backend: `:`-separated folders dataset_file/output_dir must be inside (default: the repo and the temp folder)."
    )

    @property
    def train_script(self) -> Path:
        path = Path(self.train_script_path)
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def roots(self) -> tuple[str, ...]:
        if self.allowed_roots:
            return tuple(str(Path(p).resolve()) for p in self.allowed_roots.split(":") if p.strip())
        return (str(REPO_ROOT), str(Path(tempfile.gettempdir()).resolve()))

    def studio_root(self) -> str:
        """The allowed root a local studio run writes under: the temp folder when it is one (a run's
        output is no business of the repository checkout), else the first root."""
        temp = str(Path(tempfile.gettempdir()).resolve())
        roots = self.roots
        return temp if temp in roots or not roots else roots[0]


class LocalUnit(BackendUnit):
    kind = LOCAL
    settings = LocalSettings

    def rules(self, settings: Any, context: RulesContext) -> LocalRules:
        return LocalRules(roots=settings.roots, base=str(context.repo_root), studio_output_root=str(Path(settings.studio_root()) / "studio"))

    def build(self, settings: Any, context: BuildContext) -> Backend:
        from shared.adapters.local_backend import LocalBackend

        return LocalBackend(
            python_bin=settings.python_bin,
            script=settings.train_script,
            cwd=context.repo_root,
            events=context.events,
            runs_dir=context.state_dir("runs"),
        )
