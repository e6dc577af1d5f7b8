"""Study 2's finished runs, read for its reports (imagenette/report.py, imagenette/screen_report.py,
cifar/report.py): one row per ``<folder>/runs/<name>_s<seed>/metrics.json``, every run checked before
anything is written, the CPU kind it ran on, and a run's per-image misclassification flags from its
``predictions_<split>.txt``.

Each refusal is a ``SystemExit`` whose message starts with the calling script's name (``prog``) and
names the run and what is wrong, so a report never silently counts a run it should not.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

RUN_NAME = re.compile(r"(?P<name>.+)_s(?P<seed>0|[1-9][0-9]*)")  # <method>_s<seed>, the seed as the lanes write it
BF16_UNITS = ("amx_bf16", "avx512_bf16")


def cpu_kind(hardware: object) -> str:
    """``"NAME (units)"`` of a run's metrics.json ``hardware`` record: the CPU's name and its bf16 units
    (an Intel Xeon with AMX and one without share a name, and run the bf16 step at about twice and half
    the speed), ``""`` when it names no CPU."""
    if not isinstance(hardware, dict) or not hardware.get("cpu"):
        return ""
    units = [unit for unit in BF16_UNITS if hardware.get(unit)]
    return f"{hardware['cpu']} ({', '.join(units) or 'no bf16 units'})"


def read_json(path: Path, what: str, prog: str) -> Dict:
    """The JSON object in ``path``; SystemExit naming it when it is missing, truncated or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SystemExit(f"{prog}: {path}: not a readable {what} ({reason})") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{prog}: {path}: not a readable {what} (a JSON {type(data).__name__}, not an object)")
    return data


def not_finite(value: object, key: str = "") -> Optional[str]:
    """The first key (dotted into nested objects) whose number is NaN or infinite, with its value; else None."""
    if isinstance(value, dict):
        return next((k for sub, v in value.items() if (k := not_finite(v, f"{key}.{sub}" if key else str(sub)))), None)
    if isinstance(value, list):
        return next((k for i, v in enumerate(value) if (k := not_finite(v, f"{key}[{i}]"))), None)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key} is {value}"
    return None


def read_runs(
    root: Path, folders: Sequence[str], check_regime: Callable[[Path, Dict], Optional[Dict]], prog: str
) -> List[Dict]:
    """One row per finished run (a metrics.json) of ``root``'s ``folders``: its metrics (less
    ``versions`` and ``hardware``), ``name``, ``folder``, ``seed``, ``cpu`` (the CPU's name),
    ``cpu_kind`` (its name and bf16 units) and whatever columns ``check_regime(run, config)`` returns
    (None: none). SystemExit, before anything is written, naming a run that cannot count: a folder
    name without ``_s<seed>``, a metrics.json or config.json that cannot be read, a config that
    ``check_regime`` refuses, a NaN or infinite metric, or a method and seed found twice (a copied run
    folder)."""
    rows = []
    seen: Dict[tuple, Path] = {}
    for folder in folders:
        for path in sorted((root / folder / "runs").glob("*_s*/metrics.json")):
            run = path.parent
            named = RUN_NAME.fullmatch(run.name)
            if named is None:
                raise SystemExit(f"{prog}: {run}: the run folder's name does not end in _s<seed> (an integer)")
            name, seed = named["name"], int(named["seed"])
            if (name, seed) in seen:
                raise SystemExit(
                    f"{prog}: {name} seed {seed} is there twice: {seen[(name, seed)]} and {run} (a copied run"
                    " folder?): keep one"
                )
            seen[(name, seed)] = run
            metrics = read_json(path, "metrics.json", prog)
            columns = check_regime(run, read_json(run / "config.json", "config.json", prog)) or {}
            metrics.pop("versions", None)
            hardware = metrics.pop("hardware", None)
            bad = not_finite(metrics)
            if bad is not None:
                raise SystemExit(f"{prog}: {path}: {bad}, not a finite number: this run cannot count")
            cpu = hardware.get("cpu") if isinstance(hardware, dict) else None
            row = {"name": name, "folder": folder, **metrics, "seed": seed, "cpu": cpu or ""}
            rows.append({**row, "cpu_kind": cpu_kind(hardware), **columns})
    return rows


def wrong_flags(run: Path, split: str, prog: str) -> Optional[List[int]]:
    """The run's labels followed by its per-image 0/1 misclassification flags on ``split`` (its
    ``predictions_<split>.txt``; the labels are the key that two runs saw the same images); None for
    a run without the file (runs older than the file)."""
    path = run / f"predictions_{split}.txt"
    if not path.exists():
        return None
    pairs = [line.split() for line in path.read_text().splitlines() if line and not line.startswith("#")]
    try:
        ints = [(int(p[0]), int(p[1])) for p in pairs if len(p) == 2]
    except ValueError:
        ints = []
    if not pairs or len(ints) != len(pairs):
        raise SystemExit(f"{prog}: {path} is not a predictions file (two integers a line)")
    return [a for a, _ in ints] + [int(a != b) for a, b in ints]
