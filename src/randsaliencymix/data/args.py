"""Argument checks shared by the loaders: counts, image sizes and the path/size type aliases.

A wrong type from a Python caller is a ``TypeError``; a value a user can fix (a size of 0, a
negative count) is a :class:`~randsaliencymix.errors.UsageError`.
"""

from __future__ import annotations

import numbers
import os
from typing import Optional, Tuple, Union

from ..errors import UsageError

__all__ = ["PathLike", "SizeArg", "check_int", "check_size"]

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
