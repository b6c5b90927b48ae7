"""Shared fixtures: real etcd, real S3-protocol server, real service processes."""

pytest_plugins = [
    "tests.fixtures.mesh",
    "tests.fixtures.s3",
    "tests.fixtures.counting_proxy",
    "tests.fixtures.kube",
]
