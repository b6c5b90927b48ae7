"""The disk tier's file format and its blocking file operations (run them in threads).

Design note
-----------
Format version 2. One file per block, at
`<cache_dir>/blocks/<hh>/<block.name>.blk`, where `hh` is the first two hex digits of
sha256(block.name): 256 directories keep each one small even at a million blocks.

    offset 0       b"RSVB"                  magic
    offset 4       u16, big-endian          format version (FORMAT_VERSION)
    offset 6       u32, big-endian          header length H
    offset 10      H bytes, UTF-8 JSON      {"dataset", "path", "version", "index",
                                             "length", "sha256"}
    then           zero bytes up to D, the next multiple of 4096 (ALIGN)
    offset D       `length` bytes           the block's data

- Data starts on a page boundary so that a block in page-aligned memory (a fill's
  buffer) is written with O_DIRECT: no copy into the page cache (measured 17-86 ms of
  CPU per 64 MiB buffered, 3 ms direct), and no second copy in memory of a block the
  memory tier holds already. File systems that refuse O_DIRECT (tmpfs) get ordinary
  writes.

- Reading back checks the magic, the format version, that the header names the block
  asked for, the length, and the sha256 of the data. Any mismatch, short file or I/O
  error raises `CorruptBlock`, and the store deletes the file and treats it as a miss.
  An unknown format version is corrupt too: a cache can always fetch a block again, so
  it never needs to read an older or newer format. Bump FORMAT_VERSION on any change.
- Writes go to a unique temp file in the block's directory, then `os.replace`, so a
  reader or a restart sees a whole file or none. There is no fsync: a file torn by a
  power cut fails its checksum when read and is fetched again, which costs far less
  than syncing every block.
- `scan` (at start) reads headers only, not data: hashing the whole disk before
  serving would delay a restart by minutes. It checks that each file's size matches
  its header, deletes temp files and unparseable files, and orders blocks by mtime;
  `read` bumps the mtime, so the LRU order survives a restart approximately.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import mmap
import os
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from reservoir.blocks import BlockData, BlockId

log = logging.getLogger(__name__)

_T = TypeVar("_T")

MAGIC = b"RSVB"
FORMAT_VERSION = 2
ALIGN = 4096  # where data starts, and O_DIRECT's unit of size, offset and address
_PREFIX = struct.Struct(">4sHI")  # magic, format version, header length
# A header holds a dataset name, a path (at most 4 KiB on common file systems) and a
# version string; a longer "header" is garbage, and must not make us allocate it.
MAX_HEADER = 64 * 1024
BLOCK_SUFFIX = ".blk"
TEMP_SUFFIX = ".tmp"


class CorruptBlock(Exception):
    """A block file that must not be served; the message says why."""


@dataclass(frozen=True)
class Header:
    block: BlockId
    length: int
    sha256: str
    data_offset: int


@dataclass(frozen=True)
class Found:
    """A block file found by `scan`."""

    block: BlockId
    length: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanResult:
    found: list[Found]  # oldest mtime first: least recently used first
    corrupt: int  # block files deleted because their header or size is wrong
    temps: int  # leftover temp files deleted


def blocks_root(cache_dir: Path) -> Path:
    return cache_dir / "blocks"


def block_path(root: Path, block: BlockId) -> Path:
    name = block.name
    return root / hashlib.sha256(name.encode()).hexdigest()[:2] / f"{name}{BLOCK_SUFFIX}"


def encode_header(block: BlockId, data: BlockData) -> bytes:
    fields = {
        "dataset": block.dataset,
        "path": block.path,
        "version": block.version,
        "index": block.index,
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    header = json.dumps(fields, separators=(",", ":")).encode()
    header = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header
    return header + bytes(-len(header) % ALIGN)


def write(path: Path, block: BlockId, data: BlockData) -> None:
    """Write `block` atomically at `path`; OSError (a full disk...) leaves no temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    header = encode_header(block, data)
    try:
        # An mmap starts on a page boundary; bytes may start anywhere.
        if not (isinstance(data, mmap.mmap) and _write_direct(tmp, header, data)):
            with open(tmp, "xb") as f:
                f.write(header)
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # cleanup must not hide the failure
            tmp.unlink(missing_ok=True)
        raise


def _write_direct(tmp: Path, header: bytes, data: mmap.mmap) -> bool:
    """Write `tmp` with O_DIRECT; False, leaving no file, where that is refused."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    try:
        whole = len(data) - len(data) % ALIGN
        # The header and the data's last partial page go through aligned scratch pages.
        with mmap.mmap(-1, len(header) + ALIGN) as scratch, memoryview(data) as view:
            scratch[: len(header)] = header
            tail = view[whole:]
            scratch[len(header) : len(header) + len(tail)] = tail
            _write_all(fd, memoryview(scratch)[: len(header)])
            _write_all(fd, view[:whole])
            if tail:
                _write_all(fd, memoryview(scratch)[len(header) :])
                os.ftruncate(fd, len(header) + len(data))
    except OSError as exc:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    return True


def _write_all(fd: int, view: memoryview) -> None:
    with view:
        while view:
            view = view[os.write(fd, view) :]


def read(path: Path, block: BlockId) -> bytes:
    """The verified data of `block`, and its mtime bumped; CorruptBlock otherwise."""
    try:
        with open(path, "rb") as f:
            header = _read_header(f)
            f.seek(header.data_offset)
            # One byte more than announced, to notice trailing garbage.
            data = f.read(header.length + 1)
        os.utime(path)
    except OSError as exc:
        raise CorruptBlock(f"unreadable: {exc}") from exc
    if header.block != block:
        raise CorruptBlock(f"the file holds another block ({header.block})")
    if len(data) != header.length:
        raise CorruptBlock(f"{len(data)} data bytes where the header says {header.length}")
    if hashlib.sha256(data).hexdigest() != header.sha256:
        raise CorruptBlock("sha256 mismatch")
    return data


def remove(paths: Iterable[Path]) -> None:
    """Delete files; a failure is logged, never raised (the index has dropped them)."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("disk tier: could not delete %s: %s", path, exc)


def scan(root: Path) -> ScanResult:
    """The block files under `root`, by header; deletes temp and broken files."""
    root.mkdir(parents=True, exist_ok=True)
    found: list[Found] = []
    corrupt = temps = 0
    for sub in os.scandir(root):
        if not sub.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(sub.path):
            if entry.name.endswith(TEMP_SUFFIX):
                remove([Path(entry.path)])
                temps += 1
            elif entry.name.endswith(BLOCK_SUFFIX):
                try:
                    found.append(_check(root, Path(entry.path)))
                except CorruptBlock as exc:
                    log.warning("disk tier: deleting block file %s: %s", entry.path, exc)
                    remove([Path(entry.path)])
                    corrupt += 1
    found.sort(key=lambda f: f.mtime_ns)
    return ScanResult(found, corrupt, temps)


def _check(root: Path, path: Path) -> Found:
    """A cheap check at start: a sane header, at the right path, and the right size."""
    try:
        with open(path, "rb") as f:
            header = _read_header(f)
            st = os.fstat(f.fileno())
    except OSError as exc:
        raise CorruptBlock(f"unreadable: {exc}") from exc
    if block_path(root, header.block) != path:
        raise CorruptBlock(f"the file holds another block ({header.block})")
    if st.st_size != header.data_offset + header.length:
        raise CorruptBlock(f"{st.st_size} bytes where the header says {header.length} of data")
    return Found(header.block, header.length, st.st_mtime_ns)


def _read_header(f: BinaryIO) -> Header:
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise CorruptBlock("shorter than its header")
    magic, version, size = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise CorruptBlock(f"bad magic {magic!r}")
    if version != FORMAT_VERSION:
        raise CorruptBlock(f"unknown format version {version}")
    if size > MAX_HEADER:
        raise CorruptBlock(f"header of {size} bytes")
    raw = f.read(size)
    try:
        fields = json.loads(raw)
        block = BlockId(
            _typed(fields["dataset"], str),
            _typed(fields["path"], str),
            _typed(fields["version"], str),
            _typed(fields["index"], int),
        )
        length, sha256 = _typed(fields["length"], int), _typed(fields["sha256"], str)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptBlock(f"bad header: {exc!r}") from exc
    if length < 0 or block.index < 0:
        raise CorruptBlock("negative length or index in the header")
    return Header(block, length, sha256, -(-(_PREFIX.size + size) // ALIGN) * ALIGN)


def _typed(value: object, kind: type[_T]) -> _T:
    # bool is an int to isinstance; no header field is ever a bool.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not {kind.__name__}")
    return value
