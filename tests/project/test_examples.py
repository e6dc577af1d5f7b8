"""Every example in ``examples/`` runs a few steps, as a user would start it (a subprocess; the DDP one
under ``python -m torch.distributed.run`` with two CPU processes on a free port)."""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
from typing import Dict, Iterator, List, Tuple

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples"
STEPS = "3"


def example_env() -> Dict[str, str]:
    drop = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "OMP_NUM_THREADS": "1"}


def check_output(cmd: List[str], proc: subprocess.Popen, timeout: float = 180) -> str:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, f"{cmd}:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    losses = [float(v) for v in re.findall(r"loss (\S+)$", stdout, re.M)]
    assert losses and all(math.isfinite(v) for v in losses), stdout
    return stdout


def start(cmd: List[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=example_env(),
                            cwd=EXAMPLES.parent)  # fmt: skip


try:
    import lightning.pytorch  # noqa: F401

    HAVE_LIGHTNING = True
except ImportError:
    HAVE_LIGHTNING = False

SCRIPTS = ["plain_loop.py", "dataloader_collate.py", "timm_style_loop.py", "lightning_module.py"]
# The Lightning example needs Lightning (the [lightning] extra, which make test installs).
RUNNABLE = [s for s in SCRIPTS if HAVE_LIGHTNING or s != "lightning_module.py"]
ARGS = ["--steps", STEPS, "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def launched() -> Iterator[Dict[str, Tuple[List[str], subprocess.Popen]]]:
    """The single-process examples, started together (most of their time is importing torch)."""
    cmds = {script: [sys.executable, str(EXAMPLES / script), *ARGS] for script in RUNNABLE}
    procs = {script: (cmd, start(cmd)) for script, cmd in cmds.items()}
    yield procs
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(launched: Dict[str, Tuple[List[str], subprocess.Popen]], script: str) -> None:
    if script not in launched:
        pytest.skip("Lightning is not installed (pip install 'randsaliencymix[lightning]')")
    out = check_output(*launched[script])
    assert f"step {STEPS}" in out or f"{STEPS} steps" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_example_runs_under_torchrun() -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    cmd += [str(EXAMPLES / "ddp_torchrun.py"), *ARGS]
    assert f"2 processes, {STEPS} steps" in check_output(cmd, start(cmd))


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == {*SCRIPTS, "ddp_torchrun.py", "common.py"}
