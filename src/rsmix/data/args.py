"""Argument checks shared by the loaders: counts, image sizes and the path/size type aliases.

A wrong type from a Python caller is a ``TypeError``; a value a user can fix (a size of 0, a
negative count) is a :class:`~rsmix.errors.UsageError`.
"""

from __future__ import annotations

import numbers
import os
from typing import Optional, Tuple, Union

from ..errors import UsageError

__all__ = ["PathLike", "SizeArg", "available_memory", "check_batch_fits", "check_fits", "check_int", "check_size"]

PathLike = Union[str, "os.PathLike[str]"]
SizeArg = Optional[Union[int, Tuple[int, int]]]


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected {name} to be an int, but got {type(value).__name__} instead.")
    if value < minimum:
        raise UsageError(f"Expected {name} >= {minimum}, but got {value} instead.")
    return int(value)


def check_size(size: SizeArg) -> Optional[Tuple[int, int]]:
    """``None``, or ``(height, width)`` from an int or a pair of ints, each at least 1."""
    if size is None:
        return None
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        side = check_int("size", size, 1)
        return side, side
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return check_int("size[0]", size[0], 1), check_int("size[1]", size[1], 1)
    raise TypeError(f"Expected size as an int or (height, width), but got {size!r} instead.")


def available_memory() -> int:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else the physical memory, else 0 (unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 0


def check_fits(n: int, channels: int, height: int, width: int, what: str) -> None:
    """A UsageError, before anything is decoded, when ``n`` uint8 images of that shape cannot fit
    in the memory available (unknown memory: no check)."""
    need = n * channels * height * width
    have = available_memory()
    if have and need > have:
        side = int((have / max(n * channels, 1)) ** 0.5)
        raise UsageError(
            f"{what}: {n:,} images at {height}x{width} need {need / 2**30:,.1f} GiB as uint8, but this machine has "
            f"{have / 2**30:,.1f} GiB available: choose a smaller size (at most about {side} px fits)"
        )


def check_batch_fits(batch: int, channels: int, side: int) -> None:
    """A UsageError, before anything is decoded, when one float32 batch of ``side``-px images and
    its mixed copy (a lower bound of a step's memory: the model's activations need several times
    more) cannot fit in the memory available (unknown memory: no check)."""
    need = 2 * batch * channels * side * side * 4
    have = available_memory()
    if have and need > have:
        fits = int((have / max(2 * batch * channels * 4, 1)) ** 0.5)
        raise UsageError(
            f"a batch of {batch} images at {side}x{side} and its mixed copy need {need / 2**30:,.1f} GiB as float32 "
            f"(the model's activations several times more), but this machine has {have / 2**30:,.1f} GiB available: "
            f"choose a smaller --image-size (at most about {fits} px fits) or --batch-size"
        )
