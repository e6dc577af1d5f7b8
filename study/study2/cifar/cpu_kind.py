"""The CPU kind of this machine, or of finished runs: the CPU's name and its bf16 units, as the runs
record them in metrics.json's ``hardware`` (an Intel Xeon with AMX and one without share a name).
regime_b.sh uses it to keep each seed's runs on one CPU kind.

    python study/study2/cifar/cpu_kind.py             # this machine's kind
    python study/study2/cifar/cpu_kind.py RUN_DIR...  # the distinct kinds of these runs, one a line
                                                      # (a run without metrics.json or hardware: none)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # study/study2/
from run_folders import cpu_kind as kind  # the one formula of a CPU kind


def here() -> str:
    import torch

    from rsmix.precision import hardware

    return kind(hardware(torch.device("cpu")))


def of_runs(runs: List[Path]) -> List[str]:
    found = set()
    for run in runs:
        try:
            metrics = json.loads((run / "metrics.json").read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cpu_kind.py: {run}/metrics.json is unreadable ({exc})") from None
        found.add(kind(metrics.get("hardware")))
    return sorted(found - {""})


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for kind_ in of_runs([Path(a) for a in args]) if args else [here()]:
        print(kind_)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
