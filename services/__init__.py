"""Reservoir: a distributed read cache for datasets and models in object storage."""
