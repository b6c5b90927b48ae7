"""Cron schedules for DataLoads: the five standard fields and the @ macros, in UTC.

`minute hour day-of-month month day-of-week`; each field takes `*`, numbers, ranges
`a-b`, steps `*/n` or `a-b/n` and comma lists. As in cron, when both day fields are
restricted a day matches if either does. Written here (about 80 lines) rather than
adding a dependency for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reservoir.errors import InvalidArgument

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
# Five years of days: a schedule that never fires (Feb 30) is refused, not looped on.
_HORIZON_DAYS = 5 * 366


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else (1 if not step_text else 0)
        if span == "*":
            start, end = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(part)
            start, end = int(a), int(b)
        elif span.isdigit():
            start = int(span)
            end = high if step_text else start
        else:
            raise ValueError(part)
        if step < 1 or not (low <= start <= end <= high):
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Schedule:
        fields = _MACROS.get(text.strip(), text).split()
        if len(fields) != 5:
            raise InvalidArgument(f"schedule {text!r} is not cron: five fields, e.g. '0 3 * * *'")
        try:
            sets = [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _BOUNDS, strict=True)]
        except ValueError as exc:
            raise InvalidArgument(f"schedule {text!r}: bad field {exc}") from None
        weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
        minutes, hours, days, months = sets[:4]
        return cls(minutes, hours, days, months, weekdays, fields[2] == "*", fields[4] == "*")

    def _day_matches(self, t: datetime) -> bool:
        by_day = t.day in self.days
        by_weekday = (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday

    def next_after(self, t: datetime) -> datetime:
        """The first time the schedule fires strictly after `t`."""
        t = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = t + timedelta(days=_HORIZON_DAYS)
        while t < end:
            if t.month not in self.months or not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise InvalidArgument("the schedule never fires")
