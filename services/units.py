"""Byte sizes as people write them: 512MiB, 4GiB, 1.5G, or plain bytes."""

from __future__ import annotations

import re

from reservoir.errors import InvalidArgument

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in `text`; InvalidArgument for anything else."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise InvalidArgument(f"{text!r} is not a size: write e.g. 512MiB, 4GiB or 1048576")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(n: int) -> str:
    """`n` bytes in the largest binary unit that keeps it at or above 1."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
