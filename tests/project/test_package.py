"""The installable package: ``python -m build`` gives an sdist and a wheel (built from that sdist), the
wheel installs into a fresh virtual environment and runs the README's training-loop snippet there,
and the version is written once (``randsaliencymix.__version__``) and shown by ``rsmix --version``.

The fresh environment must not download torch (GBs): it is created without pip, the wheel is
installed into it with ``--no-deps --no-index`` by this interpreter's pip (``pip --python``), and
only then is a ``.pth`` file added that appends the test interpreter's site-packages (where torch
and numpy are) to its ``sys.path``. Paths listed in a ``.pth`` file are plain ``sys.path`` entries
whose own ``.pth`` files are not run, so the development checkout's editable install stays
invisible; the test checks that the package is imported from the fresh environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List

import numpy
import pytest
import torch

import randsaliencymix
from conftest import ROOT
from rsmix import cli

VERSION = randsaliencymix.__version__


def run(cmd: List[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """sdist and wheel of a copy of the project (the checkout is not written to)."""
    work = tmp_path_factory.mktemp("package")
    tree = work / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = work / "dist"
    # --no-isolation: this environment's setuptools builds, so nothing is downloaded.
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)])
    (sdist,), (wheel,) = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    return {"sdist": sdist, "wheel": wheel}


def test_build_gives_sdist_and_wheel_with_every_module(dist: Dict[str, Path]) -> None:
    assert dist["wheel"].name == f"randsaliencymix-{VERSION}-py3-none-any.whl"
    assert dist["sdist"].name == f"randsaliencymix-{VERSION}.tar.gz"
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"randsaliencymix-{VERSION}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    sources = {str(p.relative_to(ROOT / "src").as_posix()) for p in (ROOT / "src").rglob("*.py")}
    sources.add("randsaliencymix/py.typed")
    assert sources <= names, sources - names
    assert "rsmix/__main__.py" in names and "rsmix/cli.py" in names  # the harness ships beside the library
    assert f"Version: {VERSION}\n" in metadata and "Requires-Dist: torch" in metadata
    assert "rsmix = rsmix.cli:main" in entry_points
    assert "License-Expression: MIT\n" in metadata and f"{info}/licenses/LICENSE" in names
    with tarfile.open(dist["sdist"]) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "LICENSE", "src/randsaliencymix/integrations/timm.py"} <= members


def readme_snippet() -> str:
    """The first python block of the README's "Use in a training loop" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use in a training loop", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under 'Use in a training loop'"
    return match.group(1)


# What the README's snippet leaves to the reader: a model and a loader.
PREAMBLE = """\
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
loader = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(3)]
"""
EPILOGUE = """
import randsaliencymix
loss.backward()
assert torch.isfinite(loss) and y.shape == (8, 10)
print("package", randsaliencymix.__file__)
print("version", randsaliencymix.__version__)
"""


def test_wheel_in_a_fresh_venv_runs_the_readme_snippet(dist: Dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         "--disable-pip-version-check", str(dist["wheel"])])  # fmt: skip
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = sorted({str(Path(m.__file__).resolve().parents[1]) for m in (torch, numpy) if m.__file__})
    (Path(purelib) / "rsmix_test_deps.pth").write_text("\n".join(deps) + "\n")

    script = tmp_path / "snippet.py"
    script.write_text(PREAMBLE + readme_snippet() + EPILOGUE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = run([str(python), str(script)], cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}).stdout
    line = re.search(r"^package (.+)$", out, re.M)
    assert line, out
    imported = Path(line.group(1)).resolve()
    assert imported == Path(purelib).resolve() / "randsaliencymix" / "__init__.py"
    assert f"version {VERSION}" in out
    shown = run([str(venv / "bin" / "rsmix"), "--version"], cwd=tmp_path, env=env).stdout
    assert shown == f"rsmix {VERSION}\n"


def test_version_is_written_once_and_shown_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = { attr = "randsaliencymix.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == f"rsmix {VERSION}\n"
