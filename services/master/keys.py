"""Where the master keeps each thing in etcd: every key lives under /reservoir/.

    /reservoir/leader                  the elected master (under its lease)
    /reservoir/workers/<id>            WorkerInfo (under the worker's lease)
    /reservoir/datasets/<name>         Dataset: spec and status
    /reservoir/files/<name>/<path>     FileInfo, one key per file

Values are serialized protobuf messages from reservoir.v1, so they carry their own
schema evolution rules.
"""

from __future__ import annotations

ROOT = "/reservoir/"
LEADER = ROOT + "leader"
WORKERS = ROOT + "workers/"
DATASETS = ROOT + "datasets/"
FILES = ROOT + "files/"


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
