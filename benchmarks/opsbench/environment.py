"""Where a benchmark ran: the hardware, the versions of what was timed, the git state of the tree
and the command line, for the report's header."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch

from rsmix.precision import cpu_name

ROOT = Path(__file__).resolve().parents[2]  # the project


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception as exc:
        return f"not available ({type(exc).__name__})"


def _git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + (" (src/ has uncommitted changes)" if dirty else "")


def environment(device: torch.device) -> List[Tuple[str, str]]:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    cv_threads = "?"
    try:
        import cv2

        cv_threads = str(cv2.getNumThreads())
    except ImportError:
        pass
    info = [
        ("CPU", cpu_name()),
        ("CPU cores (usable / total)", f"{cores} / {os.cpu_count()}"),
        ("torch threads", str(torch.get_num_threads())),
        ("OpenCV threads", cv_threads),
    ]
    if device.type == "cuda":
        info.append(("GPU", torch.cuda.get_device_name(device)))
    info += [
        ("device", str(device)),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("numpy", np.__version__),
        ("opencv", _version("cv2")),
        ("kornia", _version("kornia")),
        ("scikit-image", _version("skimage")),
        ("randsaliencymix", f"{_version('randsaliencymix')} at git {_git_state()}"),
        ("OS", platform.platform()),
    ]
    return info


def command() -> str:
    """This process's command line, the interpreter relative to the working folder where it is below it."""
    exe = sys.executable
    try:
        rel = os.path.relpath(exe)
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in [exe] + sys.argv)
