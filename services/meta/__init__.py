"""Metadata storage: a small key-value seam (`KV`) with etcd behind it."""

from reservoir.meta.etcd import EtcdKV
from reservoir.meta.kv import KV, GuardFailed, LeaseExpired

__all__ = ["KV", "EtcdKV", "GuardFailed", "LeaseExpired"]
