"""The one way the study reports write generated tables into a Markdown file: every
``<!-- BEGIN name -->`` ... ``<!-- END name -->`` block whose name has a maker is rewritten with
what the maker returns; the text outside the blocks is never touched."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict


def fill(text: str, blocks: Dict[str, Callable[[], str]]) -> str:
    for name, make in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n).*?(<!-- END {re.escape(name)} -->)", re.S)
        found = pattern.search(text)
        if found is not None:
            body = make()
            text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def fill_file(path: Path, blocks: Dict[str, Callable[[], str]]) -> bool:
    """Rewrite ``path``'s blocks; True if its text changed."""
    old = path.read_text()
    new = fill(old, blocks)
    if new != old:
        path.write_text(new)
    return new != old
