"""Dataset names, and paths inside a dataset: one normal form, no way out of the root.

A dataset name is a DNS-1123 label, like a Kubernetes object name, so that a Dataset
resource and its Reservoir dataset can share it.

A dataset path is "/"-separated and relative to the dataset's root, with no leading
or trailing slash; the root itself is "". A leading "/" means the dataset root (as
in a chroot), "." and empty segments vanish, and ".." may climb only as far as the
root: a path that would leave it is refused, never clamped, so a typo cannot
silently name another file.
"""

from __future__ import annotations

import re

from reservoir.errors import InvalidArgument

MAX_PATH_BYTES = 4096  # PATH_MAX on Linux: longer names cannot be mounted anyway
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_name(name: str) -> None:
    """InvalidArgument unless `name` is a valid dataset name."""
    if not _NAME.match(name):
        raise InvalidArgument(
            f"dataset name {name!r} is not a DNS-1123 label: "
            "1-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
        )


def normalize(path: str) -> str:
    """The normal form of `path`, or InvalidArgument saying what is wrong with it."""
    if "\x00" in path:
        raise InvalidArgument(f"path {path!r} contains a NUL byte")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidArgument(f"path is longer than {MAX_PATH_BYTES} bytes")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidArgument(f"path {path!r} leaves the dataset's root")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def split_target(target: str) -> tuple[str, str]:
    """Split the command line's NAME[/PATH] into a dataset name and a normal path."""
    name, _, path = target.strip("/").partition("/")
    if not name:
        raise InvalidArgument("name a dataset: NAME or NAME/PATH")
    return name, normalize(path)
