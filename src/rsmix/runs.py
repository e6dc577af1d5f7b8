"""A run folder's life: refuse to overwrite a run by mistake, lock the folder while a process
trains in it, clean what a killed write left, write the config and keep the epoch log.

A folder that holds a run (any of :data:`RUN_FILES`) is only written to with ``resume`` (continue
it) or ``overwrite`` (delete the run's files and start again). While a process trains in a folder
it holds an exclusive ``flock`` on the folder itself, so a second process (a rerun of a killed
``rsmix compare``, say) gets a clear error instead of training the same run twice at once; the
lock goes with the process, however it ends.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, List, Optional, Type

from .errors import UsageError
from .files import atomic_write_bytes, atomic_write_json, remove_stale_temporaries

__all__ = [
    "RUN_FILES",
    "RunLock",
    "append_log",
    "check_output_folder",
    "is_compare_folder",
    "is_run_folder",
    "read_log",
    "start_run_folder",
]

RUN_FILES = ("checkpoint.pt", "config.json", "log.jsonl", "metrics.json")


def is_compare_folder(folder: Path) -> bool:
    """``rsmix compare``'s folder: its runs under ``runs/``, its tables beside them."""
    folder = Path(folder)
    return (folder / "runs").is_dir() or (folder / "results.csv").is_file()


def is_run_folder(folder: Path) -> bool:
    """One run's folder (``rsmix train``'s): any of :data:`RUN_FILES`."""
    return _run_state(Path(folder)) is not None


def _run_state(folder: Path) -> Optional[str]:
    if (folder / "metrics.json").exists():
        return "finished"
    if any((folder / name).exists() for name in RUN_FILES):
        return "partial"
    return None


def check_output_folder(folder: Path, *, resume: bool, overwrite: bool) -> None:
    """A UsageError unless ``folder`` may receive this run (nothing is written here)."""
    folder = Path(folder)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other: continue the run or replace it")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file; expected a run folder (new or existing)")
    parent = next((p for p in folder.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"--out {folder}: {parent} is a file, not a folder")
    if folder.is_dir() and is_compare_folder(folder):
        raise UsageError(
            f"--out {folder} is an rsmix compare folder (it has runs/ or results.csv); rsmix train writes one run: "
            f"choose a run folder (a compare's runs are {folder}/runs/<name>_s<seed>)"
        )
    state = _run_state(folder) if folder.is_dir() else None
    if state is not None and resume and not (folder / "checkpoint.pt").exists():
        # Trained epochs without the checkpoint they end in: resuming would start again and
        # throw them away. (A folder killed before its first checkpoint has no epochs: it starts.)
        if state == "finished" or read_log(folder):
            raise UsageError(
                f"{folder} holds a {state} run but no checkpoint.pt to resume from; pass --overwrite to "
                "delete it and start again, or choose another --out"
            )
    if state is not None and not resume and not overwrite:
        raise UsageError(
            f"{folder} holds a {state} run; pass --resume to continue it, --overwrite to delete it and "
            "start again, or choose another --out"
        )


class RunLock:
    """An exclusive, non-blocking ``flock`` on a folder (created if needed) while in the ``with``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd: Optional[int] = None

    def __enter__(self) -> RunLock:
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the run folder {self.folder}: {exc.strerror or exc}") from exc
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(
                    f"{self.folder} is in use: another process is training in it (wait for it to end, or stop it)"
                ) from None
            raise
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def start_run_folder(folder: Path, config: Dict[str, Any], epochs_done: int, *, overwrite: bool) -> None:
    """Prepare a locked folder: with ``overwrite`` delete the old run's files; remove temporary
    files a killed write left; write ``config.json``; keep only the log lines of the epochs the
    checkpoint covers (a line cut short by a kill is always past the checkpoint)."""
    folder = Path(folder)
    if overwrite:
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)
    for name in RUN_FILES:
        remove_stale_temporaries(folder, name)
    if epochs_done < int(config["epochs"]):
        # The run is not finished (or is being extended): its old final numbers no longer hold.
        (folder / "metrics.json").unlink(missing_ok=True)
    atomic_write_json(config, folder / "config.json")
    kept = [record for record in read_log(folder) if record.get("epoch", epochs_done) < epochs_done]
    atomic_write_bytes(folder / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())


def read_log(folder: Path) -> List[Dict[str, Any]]:
    """The epoch records of ``log.jsonl``; a line cut short by a kill is skipped."""
    path = Path(folder) / "log.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


def append_log(folder: Path, record: Dict[str, Any]) -> None:
    """One epoch's record as a line of ``log.jsonl`` (NaN refused: it is not JSON)."""
    with open(Path(folder) / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record, allow_nan=False) + "\n")
