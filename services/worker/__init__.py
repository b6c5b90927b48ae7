"""The worker: the data plane, caching blocks in memory and disk tiers."""
