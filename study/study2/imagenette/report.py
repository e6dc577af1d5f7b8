"""Study 2's main table (regime A) from the runs of main.sh, merged over its three folders.

    .venv/bin/python study/study2/imagenette/report.py   # writes results.csv and results.md here

Reads ``main_{operator,fg,sr}/runs/<name>_s<seed>/metrics.json`` (finished runs only). Writes
``results.csv`` (one row per run: every number of its metrics.json) and ``results.md``: per method
the test top-1 error mean ± std over its seeds, and the paired difference (method − reference over
the seeds both finished) with its 95% t-interval against each reference. An interval containing 0
is marked "noise".
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict, List

from randsaliencymix.harness.compare import mean_std_ci

HERE = Path(__file__).resolve().parent
FOLDERS = ("main_operator", "main_fg", "main_sr")
ORDER = ("none", "mixup", "cutmix", "saliencymix", "saliencymix_per_sample", "guided_sr", "rsm_seed")
REFERENCES = ("none", "cutmix", "saliencymix", "saliencymix_per_sample", "guided_sr")
METRIC = "test_top1_err"


def runs() -> List[Dict]:
    rows = []
    for folder in FOLDERS:
        for path in sorted((HERE / folder / "runs").glob("*_s*/metrics.json")):
            name, _, seed = path.parent.name.rpartition("_s")
            metrics = json.loads(path.read_text())
            metrics.pop("versions", None)
            rows.append({"name": name, "folder": folder, **metrics, "seed": int(seed)})
    return rows


def fmt(m: float, half: float) -> str:
    return f"{m:+.2f} ± {half:.2f}" if not math.isnan(half) else f"{m:+.2f} (one seed)"


def main() -> int:
    rows = runs()
    keys = ["name", "folder", "method", "seed"] + sorted({k for r in rows for k in r} - {"name", "folder", "method", "seed"})
    with open(HERE / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    by = {n: {r["seed"]: r[METRIC] for r in rows if r["name"] == n and METRIC in r} for n in ORDER}
    head = "| method | seeds | test top-1 err (%) | " + " | ".join(f"− {r}" for r in REFERENCES) + " |"
    lines = [
        "# Study 2, regime A: the main table",
        "",
        "`python study/study2/imagenette/report.py`. Test top-1 error (%), mean ± std over seeds; each",
        "difference column: method − reference, per seed, mean ± half-width of the 95% t-interval over the",
        "seeds both finished (\"noise\" when the interval contains 0).",
        "",
        head,
        "|---|---:|---:|" + "---:|" * len(REFERENCES),
    ]
    for name in ORDER:
        values = list(by[name].values())
        if not values:
            continue
        m, sd, _ = mean_std_ci(values)
        cells = []
        for ref in REFERENCES:
            seeds = sorted(set(by[name]) & set(by[ref]))
            if ref == name or not seeds:
                cells.append("")
                continue
            d, _, half = mean_std_ci([by[name][s] - by[ref][s] for s in seeds])
            noise = " noise" if not math.isnan(half) and abs(d) <= half else ""
            cells.append(fmt(d, half) + noise)
        sd_text = f" ± {sd:.2f}" if not math.isnan(sd) else ""
        lines.append(f"| {name} | {len(values)} | {m:.2f}{sd_text} | " + " | ".join(cells) + " |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
