"""timm's ``Mixup``, the reference the operators are timed against: ``timm/data/mixup.py`` read out
of a timm wheel as a standalone module (it needs only numpy and torch; the timm package is never
imported). The wheel: ``RSMIX_TIMM_WHEEL``, else one in ``/tmp/timm_wheel`` or the test suite's
pytest cache, else ``pip download timm==TIMM_VERSION --no-deps``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Dict

TIMM_VERSION = "1.0.31"
ROOT = Path(__file__).resolve().parents[2]  # the project

_TIMM: Dict[str, object] = {}


def _timm_wheel() -> Path:
    given = os.environ.get("RSMIX_TIMM_WHEEL")
    if given:
        if not Path(given).is_file():
            raise RuntimeError(f"RSMIX_TIMM_WHEEL={given} is not a file")
        return Path(given)
    for folder in (Path(tempfile.gettempdir()) / "timm_wheel", ROOT / ".pytest_cache" / "d" / "timm_wheel"):
        found = sorted(folder.glob(f"timm-{TIMM_VERSION}-*.whl"))
        if found:
            return found[0]
    folder = Path(tempfile.gettempdir()) / "timm_wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    cmd += ["--timeout", "20", "--retries", "1", "-q", "-d", str(folder), f"timm=={TIMM_VERSION}"]
    try:
        subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"no timm wheel (pip download failed: {type(exc).__name__}); set RSMIX_TIMM_WHEEL") from exc
    found = sorted(folder.glob(f"timm-{TIMM_VERSION}-*.whl"))
    if not found:
        raise RuntimeError(f"no timm wheel (pip download timm=={TIMM_VERSION} found none); set RSMIX_TIMM_WHEEL")
    return found[0]


def timm_mixup_module() -> ModuleType:
    """timm's ``timm/data/mixup.py`` as a standalone module (its only imports: numpy, torch)."""
    if "module" not in _TIMM:
        if "error" in _TIMM:
            raise RuntimeError(str(_TIMM["error"]))
        try:
            with zipfile.ZipFile(_timm_wheel()) as wheel:
                source = wheel.read("timm/data/mixup.py")
            path = Path(tempfile.mkdtemp(prefix="timm_reference_")) / "timm_reference_mixup.py"
            path.write_bytes(source)
            spec = importlib.util.spec_from_file_location("timm_reference_mixup", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:
            _TIMM["error"] = f"timm's mixup.py unavailable: {exc}"
            raise RuntimeError(str(_TIMM["error"])) from exc
        _TIMM["module"] = module
    return _TIMM["module"]  # type: ignore[return-value]
