"""Secret values the controller has read, replaced by *** in every log record and
status message it writes.

Values are added on the worker thread while any thread may be logging: the set is
guarded by a lock and read as a copy, so a record is never redacted against a set
that changes under it.
"""

from __future__ import annotations

import logging
import threading


class Redactor(logging.Filter):
    """Replaces every known secret value in log records with ***."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if value:
            with self._lock:
                self._values.add(value)

    def values(self) -> tuple[str, ...]:
        """A copy, longest first (a secret that contains another is hidden whole)."""
        with self._lock:
            return tuple(sorted(self._values, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for value in self.values():
            text = text.replace(value, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values():
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True
