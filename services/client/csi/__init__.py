"""The CSI node plugin: datasets as read-only volumes in pods."""
