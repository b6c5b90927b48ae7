"""The master: metadata authority, all state in etcd, one elected leader."""
