"""study/bitcheck.py's table of runs: every name maps to a registered method and saliency source, and
an unknown name is refused before any worktree is made (the runs themselves are the check's job)."""

from __future__ import annotations

import pytest

from conftest import load_script
from rsmix.methods import METHOD_NAMES

bitcheck = load_script("study/bitcheck.py", "bitcheck")


def test_every_entry_names_a_method_and_a_source() -> None:
    sources = {"operator", "fine_grained_cached", "spectral_cached", "cam"}
    for name, (method, source, flags) in bitcheck.METHODS.items():
        assert method in METHOD_NAMES and source in sources, name
        assert all(isinstance(flag, str) for flag in flags), name
    # part 1's seven methods and part 2's screen (CAM at tau 8, self-CAM labels)
    assert {"guidedmixup", "rsm_cam8", "cutmix_selfcam", "rsm_cam8_selfcam"} <= set(bitcheck.METHODS)


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown methods"):
        bitcheck.main(["HEAD", "--methods", "cutmix,bogus"])
