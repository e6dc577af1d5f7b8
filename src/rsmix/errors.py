"""The one exception class for mistakes a user can fix (bad options, paths, data, a full disk).

The CLI prints a :class:`UsageError` in one line and exits with code 2; every other exception is a
bug of the library (or of torch) and surfaces with its traceback. It subclasses ``ValueError`` so
that callers of the Python API can keep catching ``ValueError``.
"""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """A bad command line, configuration, path or data file: reported in one line, exit code 2."""
