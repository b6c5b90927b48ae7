"""Where the master keeps each thing in etcd: every key lives under /reservoir/.

    /reservoir/leader                  the elected master (under its lease)
    /reservoir/workers/<id>            WorkerInfo (under the worker's lease)
    /reservoir/datasets/<name>         Dataset: spec and status
    /reservoir/files/<name>/<path>     FileInfo, one key per file
    /reservoir/blocks/<name>/<file id>/<index>/<worker id>
                                       CachedBlock, under the worker's lease: a block
                                       map that shrinks by itself when a worker dies
    /reservoir/origin-bytes/<name>/<worker id>
                                       bytes that worker read from the origin (total)
    /reservoir/loads/<id>              LoadJob: a preload and its progress

Values are serialized protobuf messages from reservoir.v1, so they carry their own
schema evolution rules.
"""

from __future__ import annotations

ROOT = "/reservoir/"
LEADER = ROOT + "leader"
WORKERS = ROOT + "workers/"
DATASETS = ROOT + "datasets/"
FILES = ROOT + "files/"
BLOCKS = ROOT + "blocks/"
ORIGIN_BYTES = ROOT + "origin-bytes/"
LOADS = ROOT + "loads/"


def worker(worker_id: str) -> str:
    return WORKERS + worker_id


def dataset(name: str) -> str:
    return DATASETS + name


def files(name: str) -> str:
    """Prefix of every file key of dataset `name`."""
    return f"{FILES}{name}/"


def file(name: str, path: str) -> str:
    return files(name) + path


def directory(name: str, path: str) -> str:
    """Prefix of every file key below directory `path` ("" is the root)."""
    return files(name) + (path + "/" if path else "")


def blocks(name: str) -> str:
    """Prefix of every block record of dataset `name`."""
    return f"{BLOCKS}{name}/"


def file_blocks(name: str, file_id: str) -> str:
    """Prefix of the block records of one version of one file."""
    return f"{blocks(name)}{file_id}/"


def block(name: str, file_id: str, index: int, worker_id: str) -> str:
    # Zero-padded so that a scan returns a file's blocks in order.
    return f"{file_blocks(name, file_id)}{index:010d}/{worker_id}"


def origin_bytes(name: str, worker_id: str = "") -> str:
    return f"{ORIGIN_BYTES}{name}/{worker_id}"


def load(job_id: str) -> str:
    return LOADS + job_id
