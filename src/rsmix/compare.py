"""``rsmix compare``: methods x seeds with the same seeds for every method, resumable, then tables
(mean ± std, 95% CI, paired differences to a reference method) and plots.

Each run lives in ``OUT/runs/<name>_s<seed>`` and is trained by a child process, so a crashed run
loses no other result; a run with a ``metrics.json`` is finished and skipped on the next call if its
recorded config is the one asked for (else the call stops with an error naming the difference: a
finished run made with other settings is never reported as the one asked for), and an unfinished
one resumes from its checkpoint (whose own check refuses a changed config).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .config import _ADDED_KEYS, TrainConfig, available_device
from .errors import UsageError
from .files import atomic_write, atomic_write_bytes, atomic_write_json, make_folder
from .methods import METHOD_NAMES, get_method
from .runs import is_run_folder
from .train import load_splits

# A variant's name becomes a folder name: letters, digits and ._+- only, not starting with a dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")

# Two-sided 95% Student t quantiles for n - 1 degrees of freedom (1..30), then the normal limit.
_T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def t95(dof: int) -> float:
    return _T95[dof - 1] if 1 <= dof <= len(_T95) else 1.96


def mean_std_ci(values: Sequence[float]) -> Tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the 95% t confidence interval."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    m = sum(values) / n
    if n == 1:
        return m, math.nan, math.nan
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, sd, t95(n - 1) * sd / math.sqrt(n)


def split_methods(text: str) -> List[str]:
    """``--methods`` into method specs: at ``;`` when there is one; else at commas, where a comma
    between a variant's options (``rsm=randsaliencymix:gamma=5e-1,tau_src=1``) stays inside the
    variant: a piece ``key=value`` whose value is not a method name continues the spec before it
    when that spec has options."""
    if ";" in text:
        return [m.strip() for m in text.split(";") if m.strip()]
    specs: List[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        key, eq, value = piece.partition("=")
        continues = (
            bool(specs)
            and ":" in specs[-1]
            and eq
            and ":" not in piece
            and value.strip() not in METHOD_NAMES
            and _NAME.fullmatch(key.strip()) is not None
        )
        if continues:
            specs[-1] = f"{specs[-1]},{piece}"
        else:
            specs.append(piece)
    return specs


def parse_method(spec: str) -> Tuple[str, str, Dict[str, Any]]:
    """``name`` or ``name=method:key=value,key=value`` -> (display name, method, options)."""
    import yaml

    from . import yamlio

    if "=" in spec.split(":")[0]:
        name, rest = spec.split("=", 1)
    else:
        name, rest = spec.split(":")[0], spec
    name = name.strip()
    method, _, opts = rest.partition(":")
    method = method.strip()
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"bad method name {name!r} in {spec!r}: a name is a folder name of letters, digits and ._+- "
            "that does not start with a dot"
        )
    get_method(method)
    options: Dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"bad option {item!r} in {spec!r}; expected key=value")
        try:
            options[key.strip()] = yamlio.load(value)
        except yaml.YAMLError:
            raise UsageError(f"bad option {item!r} in {spec!r}: the value is not a valid YAML scalar") from None
    get_method(method).check_options(options)
    return name, method, options


def run_dir(out: Path, name: str, seed: int) -> Path:
    return out / "runs" / f"{name}_s{seed}"


def die_with_parent() -> None:
    """Called by a run that ``compare`` launched (``RSMIX_PARENT_PID`` set): on Linux, ask the
    kernel for SIGTERM when the parent dies, so a killed compare leaves no orphan training; if the
    parent is already gone, stop now. Elsewhere the run folder's lock still prevents a rerun from
    training the same run twice at once."""
    parent = os.environ.get("RSMIX_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if str(os.getppid()) != parent:
        raise SystemExit(f"rsmix train: the compare ({parent}) that launched this run has ended")


# Where a finished run executed: its results do not depend on these.
_WHERE = frozenset({"device", "threads", "eval_every", "data_root", "download"})


def check_finished_run(directory: Path, cfg: TrainConfig) -> None:
    """A UsageError unless the finished run in ``directory`` was made with ``cfg`` (every key but
    where it ran; normalisation only where ``cfg`` gives one; keys added since it ran at the value
    that reproduces what it did)."""
    try:
        saved = json.loads((directory / "config.json").read_text())
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{directory} has metrics.json but no readable config.json ({exc}); move the folder away"
        ) from None
    saved = {**_ADDED_KEYS, **saved}
    asked = asdict(cfg)
    changed = [
        f"{key} {saved.get(key)!r} there, {value!r} asked"
        for key, value in asked.items()
        if key not in _WHERE
        and not (key in ("mean", "std") and value is None)
        and not (key == "precision" and value == "auto")  # auto accepts the precision the run chose
        and saved.get(key) != value
    ]
    if changed:
        raise UsageError(
            f"{directory} holds a finished run made with other settings ({'; '.join(changed)}); "
            "give the variant another name or use another --out folder"
        )


def _launch(cfg: TrainConfig, directory: Path, quiet: bool) -> int:
    make_folder(directory)
    request = directory / "request.json"
    atomic_write_json(asdict(cfg), request)
    cmd = [
        sys.executable,
        "-m",
        "rsmix",
        "train",
        "--config",
        str(request),
        "--out",
        str(directory),
        "--resume",
        "--no-progress",
    ]
    with open(directory / "stdout.log", "ab") as log:
        env = dict(os.environ, RSMIX_PARENT_PID=str(os.getpid()))
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if not quiet:
        status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {directory}/stdout.log)"
        print(f"  {directory.name}: {status}", flush=True)
    return proc.returncode


def compare(
    base: TrainConfig,
    methods: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    jobs: int = 1,
    reference: Union[str, Sequence[str], None] = None,
    quiet: bool = False,
    shared_mix: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Train every method x seed not yet finished in ``out`` and summarise. ``shared_mix`` (the
    ``--mix-opt`` options) goes to every method but ``none``; a variant's own options win.
    ``base.self_cam`` too goes to every method but ``none``.
    ``reference``: one method name, or several (a comma-separated string or a list), for the
    paired differences; the first method by default."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; expected a study folder (new or existing)")
    if out.is_dir() and is_run_folder(out):
        raise UsageError(
            f"--out {out} is one training run's folder (rsmix train's); rsmix compare writes a folder of runs: "
            "choose another --out"
        )
    if not methods:
        raise UsageError("no methods to compare; pass --methods, e.g. none,mixup,cutmix")
    if not seeds:
        raise UsageError("no seeds to run; pass --n-seeds N (N >= 1) or --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"seeds must be unique, got {list(seeds)}")
    specs = [parse_method(m) for m in methods]
    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"method names must be unique, got {names}")
    references = _references(reference, names)
    todo = []
    # Seed-major order: a study stopped part-way has every method for its first seeds, so its
    # paired differences are usable.
    for seed in seeds:
        for name, method, options in specs:
            mix = dict(options) if method == "none" else {**(shared_mix or {}), **options}
            # self-CAM labels (like --mix-opt) go to every method but none, which mixes nothing
            cfg = replace(base, method=method, mix=mix, seed=seed, self_cam=0.0 if method == "none" else base.self_cam)
            cfg.check()
            directory = run_dir(out, name, seed)
            if (directory / "metrics.json").exists():
                check_finished_run(directory, cfg)
                continue
            todo.append((cfg, directory))
    if todo:
        # Bad data or a batch larger than the training set fails every run: say so once, before
        # any run folder is made.
        available_device(base.device)
        train_images = load_splits(base)[0].images.shape[0]
        if train_images < base.batch_size:
            raise UsageError(f"batch_size {base.batch_size} exceeds the {train_images} training images")
    make_folder(out)  # every check passed: a read-only or unwritable --out fails here, before any run
    if not quiet:
        print(f"{len(specs) * len(seeds) - len(todo)} runs finished, {len(todo)} to run", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        codes = list(pool.map(lambda item: _launch(item[0], item[1], quiet), todo))
    failed = sum(c != 0 for c in codes)
    summary = summarise(out, names, seeds, references)
    summary["failed"] = failed
    return summary


def _references(reference: Union[str, Sequence[str], None], names: Sequence[str]) -> List[str]:
    if reference is None:
        return [names[0]]
    wanted = [r.strip() for r in reference.split(",")] if isinstance(reference, str) else list(reference)
    wanted = [r for r in wanted if r]
    for r in wanted:
        if r not in names:
            raise UsageError(f"reference {r!r} is not among the methods {list(names)}")
    return wanted or [names[0]]


def _metric_key(rows: List[Dict[str, Any]]) -> str:
    return "test_top1_err" if rows and all("test_top1_err" in r for r in rows) else "val_top1_err"


def summarise(
    out: Path, names: Sequence[str], seeds: Sequence[int], reference: Union[str, Sequence[str]]
) -> Dict[str, Any]:
    """Write results.csv, results.md and the plots from the finished runs in ``out``; one
    paired-difference column per reference method."""
    references = [reference] if isinstance(reference, str) else list(reference)
    rows: List[Dict[str, Any]] = []
    for name in names:
        for seed in seeds:
            path = run_dir(out, name, seed) / "metrics.json"
            if path.exists():
                metrics = json.loads(path.read_text())
                metrics.pop("versions", None)
                cpu = (metrics.pop("hardware", None) or {}).get("cpu")
                rows.append({"name": name, **metrics, "seed": seed, "cpu": cpu})
    keys = ["name", "method", "seed"] + sorted({k for r in rows for k in r} - {"name", "method", "seed"})
    buffer = io.StringIO()  # the csv module quotes a cell with a comma (a CPU's name may have one)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    writer.writerows(["" if r.get(k) is None else r.get(k) for k in keys] for r in rows)
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode())

    metric = _metric_key(rows)
    by_name = {n: {r["seed"]: r for r in rows if r["name"] == n} for n in names}
    refs = ", ".join(f"`{r}`" for r in references)
    table = [
        f"Metric: `{metric}` (%, lower is better); mean ± std over seeds, 95% t-interval; "
        f"paired difference (mean ± 95% t-interval half-width) to {refs} over the seeds both finished.",
        "",
        "| method | runs | error | 95% CI | val top-1 err | NLL | ECE | "
        + "".join(f"Δ vs {r} (paired) | " for r in references)
        + "minutes/run |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(references) + "---:|",
    ]
    summary: Dict[str, Any] = {"metric": metric, "methods": {}}
    for n in names:
        runs = list(by_name[n].values())
        if not runs:
            table.append(f"| {n} | 0 |" + " |" * (6 + len(references)))
            continue
        m, sd, ci = mean_std_ci([r[metric] for r in runs])
        vm, vsd, _ = mean_std_ci([r["val_top1_err"] for r in runs if "val_top1_err" in r])
        prefix = "test" if metric.startswith("test") else "val"
        nll, _, _ = mean_std_ci([r[f"{prefix}_nll"] for r in runs if f"{prefix}_nll" in r])
        ece, _, _ = mean_std_ci([r[f"{prefix}_ece"] for r in runs if f"{prefix}_ece" in r])
        minutes, _, _ = mean_std_ci([r.get("train_seconds", math.nan) / 60 for r in runs])
        deltas, paired = [], {}
        for reference_name in references:
            ref = by_name.get(reference_name, {})
            shared = sorted(set(by_name[n]) & set(ref))
            if n == reference_name or not shared:
                deltas.append("—")
                dm = dci = math.nan
            else:
                diffs = [by_name[n][s][metric] - ref[s][metric] for s in shared]
                dm, _, dci = mean_std_ci(diffs)
                deltas.append(f"{dm:+.2f} ± {dci:.2f}" if not math.isnan(dci) else f"{dm:+.2f}")
            paired[reference_name] = {"diff": dm, "ci95": dci}
        table.append(
            (
                f"| {n} | {len(runs)} | {m:.2f} ± {sd:.2f} | [{m - ci:.2f}, {m + ci:.2f}] | "
                f"{vm:.2f} ± {vsd:.2f} | {nll:.3f} | {ece:.2f} | "
                + "".join(d + " | " for d in deltas)
                + f"{minutes:.1f} |"
            ).replace("nan", "n/a")
        )
        first = paired[references[0]]
        summary["methods"][n] = {
            "runs": len(runs),
            "mean": m,
            "std": sd,
            "ci95": ci,
            "paired_diff": first["diff"],
            "paired_ci95": first["ci95"],
            "paired": paired,
        }
    table.append("")
    table.append("A paired difference whose interval contains 0 is within noise at this number of seeds.")
    atomic_write_bytes(out / "results.md", ("\n".join(table) + "\n").encode())
    _plots(out, names, seeds, by_name, metric)
    summary["table"] = "\n".join(table)
    return summary


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    finally:
        plt.close(fig)


def _plots(
    out: Path, names: Sequence[str], seeds: Sequence[int], by_name: Dict[str, Dict[int, Any]], metric: str
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plots need the viz extra
        return
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2))
    means, cis = [], []
    for n in names:
        m, _, ci = mean_std_ci([r[metric] for r in by_name[n].values()])
        means.append(m)
        cis.append(0 if math.isnan(ci) else ci)
    ax.bar(range(len(names)), means, yerr=cis, capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    finite = [m for m in means if not math.isnan(m)]
    if finite:
        ax.set_ylim(max(0, min(finite) - 3 * max(cis + [0.5])), max(finite) + 3 * max(cis + [0.5]))
    ax.set_title("final error, mean ± 95% CI over seeds", fontsize=9)
    fig.tight_layout()
    _save_figure(fig, out / "final_error.png")

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for n in names:
        curves: Dict[int, List[float]] = {}
        for seed in seeds:
            log = run_dir(out, n, seed) / "log.jsonl"
            if not log.exists():
                continue
            for line in log.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if "val_top1_err" in rec:
                        curves.setdefault(rec["epoch"], []).append(rec["val_top1_err"])
        if curves:
            epochs = sorted(curves)
            ax.plot([e + 1 for e in epochs], [sum(curves[e]) / len(curves[e]) for e in epochs], label=n)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val top-1 error (%)")
    ax.legend(fontsize=7)
    ax.set_title("validation curves (mean over seeds)", fontsize=9)
    fig.tight_layout()
    _save_figure(fig, out / "val_curves.png")
