"""The packaged zips, built once per session by `esdb-relay package <cloud>` and unpacked: what
each cloud's own runtime code loads in tests/runtimes (never the source tree)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from handlers.cli.packaging import build

ROOT = Path(__file__).resolve().parents[2]


def runtime_python(venv: str) -> Path:
    """The interpreter of one of the runtime environments `make runtimes-env` creates."""
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make runtimes-env`", pytrace=False)
    return python


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    done: dict[str, Path] = {}

    def get(cloud: str) -> Path:
        if cloud not in done:
            artifact = build(cloud, tmp_path_factory.mktemp(f"dist-{cloud}"))
            where = tmp_path_factory.mktemp(f"app-{cloud}")
            with zipfile.ZipFile(artifact.path) as zf:
                zf.extractall(where)
            for info in zipfile.ZipFile(artifact.path).infolist():  # keep the zip's file modes
                mode = info.external_attr >> 16
                if mode:
                    os.chmod(where / info.filename, mode & 0o777)
            done[cloud] = where
        return done[cloud]

    return get


def base_env(home: Path) -> dict[str, str]:
    """A clean environment for a runtime process: nothing of the test's venv leaks in."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
