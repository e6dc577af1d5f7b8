"""The one atomic writer: every file the package writes (run folders, caches, tables) goes
through a temporary file in the same folder, an ``fsync`` and a rename, so a kill or a full disk
never leaves a half-written file under the final name.

Errors the user can fix (a read-only folder, a full disk, a path whose parent is a file) become a
:class:`~rsmix.errors.UsageError` naming the path; the temporary file is removed.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

from .errors import UsageError

__all__ = [
    "atomic_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "make_folder",
    "remove_stale_temporaries",
]

PathLike = Union[str, "os.PathLike[str]"]

# OSErrors that describe the user's machine, not a bug: reported in one line.
_USER_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}


def _user_error(path: Path, exc: OSError) -> UsageError:
    reason = exc.strerror or str(exc)
    return UsageError(f"cannot write {path}: {reason}")


def atomic_write(path: PathLike, write: Callable[[Any], None], mode: int = 0o644) -> None:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes the file private; results are as readable as their folder
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.errno in _USER_ERRNOS:
            raise _user_error(path, exc) from exc
        raise
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def make_folder(path: PathLike) -> Path:
    """``mkdir -p``, with the same one-line errors as the writer (a read-only parent, say)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in _USER_ERRNOS:
            raise _user_error(path, exc) from exc
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(obj: Any, path: PathLike) -> None:
    """JSON with sorted keys; NaN and infinity are refused (they are not JSON)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` through the atomic writer."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def remove_stale_temporaries(folder: PathLike, name: str) -> None:
    """Delete the temporary files that a killed atomic write of ``folder/name`` left behind."""
    for stale in Path(folder).glob(f".{name}.*"):
        stale.unlink(missing_ok=True)
