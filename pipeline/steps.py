"""Time steps of any cadence: daily (the default), every N hours, monthly, a 12-month climatology.

A *step* is the key of one snapshot in every store, marker, seeding and report:

* daily, monthly and climatology steps are :class:`datetime.date` objects (a month is keyed by
  its first day; a climatology month by the first day of that month in the nominal year 2000);
* sub-daily steps are naive UTC :class:`datetime.datetime` objects on the hour.

Within one store every step has the same type, so steps compare, sort and hash as usual.
:class:`Cadence` turns a requested ``start``/``end`` into steps, a decoded time stamp into the
step it belongs to, and a step into the integer the store's time coordinate holds.  Labels are
ISO text: ``2019-03-01`` for a day (unchanged from the daily-only releases, so existing markers
keep their names) and ``2019-03-01T05`` for an hour.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Step = dt.date  # a datetime.datetime is a date too: sub-daily steps are datetimes
Kind = Literal["hours", "daily", "monthly", "climatology"]

#: the nominal year of climatology steps (a leap year, so 29 February exists)
CLIMATOLOGY_YEAR = 2000
_EPOCH_DAY = dt.date(1978, 1, 1)
_EPOCH_HOUR = dt.datetime(1978, 1, 1)
_HOURS = re.compile(r"^(\d+)\s*(h|H|hour|hours)$")


def step_label(step: Step) -> str:
    """``2019-03-01`` for a date step, ``2019-03-01T05`` for an hourly one."""
    if isinstance(step, dt.datetime):
        if step.minute or step.second or step.microsecond:
            return step.isoformat(timespec="minutes")
        return step.strftime("%Y-%m-%dT%H")
    return step.isoformat()


def parse_step(label: str) -> Step:
    """The step a :func:`step_label` (or any ISO date or date-time text) names."""
    text = str(label).strip()
    if "T" in text or " " in text:
        return dt.datetime.fromisoformat(text).replace(tzinfo=None)
    return dt.date.fromisoformat(text)


def describe_runs(steps: Sequence[Step], cadence: Cadence) -> list[str]:
    """One line per contiguous run of steps: ``"2010-07-02 … 2011-06-30: 364 steps missing"``."""
    ordered = sorted(set(steps))
    lines: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and cadence.offset(ordered[j], ordered[j + 1]) == 1:
            j += 1
        n = j - i + 1
        what = "step" if n == 1 else "steps"
        span = step_label(ordered[i]) if n == 1 else f"{step_label(ordered[i])} … {step_label(ordered[j])}"
        lines.append(f"{span}: {n} {what}")
        i = j + 1
    return lines


@dataclass(frozen=True)
class Cadence:
    """The fixed step of a store's time axis."""

    kind: Kind
    hours: int = 24

    # -- names ----------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str | None) -> Cadence:
        """``"1D"``/``"daily"``, ``"1h"``, ``"3h"``…, ``"1MS"``/``"monthly"``, ``"climatology"``."""
        value = "1D" if text is None else str(text).strip()
        low = value.lower()
        if low in ("1d", "d", "day", "daily"):
            return DAILY
        if low in ("1ms", "ms", "1m", "month", "monthly"):
            return MONTHLY
        if low in ("climatology", "clim", "12ms"):
            return CLIMATOLOGY
        match = _HOURS.match(value)
        if match and 1 <= int(match.group(1)) < 24:
            return cls("hours", int(match.group(1)))
        raise ValueError(
            f"unknown time step {text!r}: expected '1D' (daily), 'Nh' with 1 <= N < 24 "
            "(e.g. '1h', '3h'), '1MS' (monthly) or 'climatology' (12 calendar months)"
        )

    @property
    def code(self) -> str:
        """The name recorded in stores and configurations (pandas' vocabulary)."""
        return {"daily": "1D", "monthly": "1MS", "climatology": "climatology"}.get(
            self.kind, f"{self.hours}h"
        )

    def __str__(self) -> str:
        return self.code

    @property
    def sub_daily(self) -> bool:
        return self.kind == "hours"

    @property
    def per_day(self) -> int:
        """Steps per day (1 for daily and coarser)."""
        return 24 // self.hours if self.sub_daily and 24 % self.hours == 0 else 1

    # -- steps ----------------------------------------------------------------------------
    def step_of(self, stamp: dt.datetime) -> Step:
        """The step a decoded time stamp (naive UTC, rounded to the minute) belongs to."""
        if self.kind == "daily":
            return stamp.date() if isinstance(stamp, dt.datetime) else stamp
        if self.kind == "monthly":
            return dt.date(stamp.year, stamp.month, 1)
        if self.kind == "climatology":
            return dt.date(CLIMATOLOGY_YEAR, stamp.month, 1)
        if not isinstance(stamp, dt.datetime):
            stamp = dt.datetime(stamp.year, stamp.month, stamp.day)
        hours = (stamp - _EPOCH_HOUR) // dt.timedelta(hours=1)
        return _EPOCH_HOUR + dt.timedelta(hours=hours - hours % self.hours)

    def ordinal(self, step: Step) -> int:
        """An integer that grows by one per step (its origin is arbitrary)."""
        if self.kind == "daily":
            return (_as_date(step) - _EPOCH_DAY).days
        if self.kind in ("monthly", "climatology"):
            return step.year * 12 + step.month - 1
        return ((_as_datetime(step) - _EPOCH_HOUR) // dt.timedelta(hours=1)) // self.hours

    def from_ordinal(self, n: int) -> Step:
        if self.kind == "daily":
            return _EPOCH_DAY + dt.timedelta(days=int(n))
        if self.kind in ("monthly", "climatology"):
            return dt.date(int(n) // 12, int(n) % 12 + 1, 1)
        return _EPOCH_HOUR + dt.timedelta(hours=int(n) * self.hours)

    def offset(self, first: Step, step: Step) -> int:
        """Number of steps from ``first`` to ``step``."""
        return self.ordinal(step) - self.ordinal(first)

    def shift(self, step: Step, n: int) -> Step:
        """The step ``n`` steps after ``step`` (before, when negative)."""
        return self.from_ordinal(self.ordinal(step) + int(n))

    def steps(self, start: dt.date, end: dt.date) -> list[Step]:
        """Every step from ``start`` to ``end``, both included.

        A plain date as ``end`` of a sub-daily axis means the whole of that day; a climatology
        ignores the years and spans the months from ``start`` to ``end`` (all twelve when the
        range covers a year or more).
        """
        whole_day = not isinstance(end, dt.datetime)  # a plain date as end: the whole of that day
        last_instant = _as_datetime(end) + (dt.timedelta(hours=23, minutes=59) if whole_day else dt.timedelta(0))
        if last_instant < _as_datetime(start):
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        if self.kind == "climatology":
            if (_as_date(end) - _as_date(start)).days >= 365 or (end.year, end.month) < (start.year, start.month):
                months = range(1, 13)
            else:
                n = (end.year - start.year) * 12 + end.month - start.month
                months = sorted({(start.month - 1 + i) % 12 + 1 for i in range(n + 1)})
            return [dt.date(CLIMATOLOGY_YEAR, m, 1) for m in months]
        first = self.step_of(_as_datetime(start))
        last = self.step_of(last_instant if self.sub_daily else _as_datetime(end))
        return [self.from_ordinal(n) for n in range(self.ordinal(first), self.ordinal(last) + 1)]

    def coerce(self, value: dt.date) -> Step:
        """A date or date-time given by a user, as a step of this cadence."""
        return self.step_of(_as_datetime(value))

    # -- the stored time coordinate ----------------------------------------------------------
    @property
    def time_units(self) -> str:
        if self.kind == "daily":
            return "days since 1978-01-01 12:00:00"  # OISST counts whole days from noon
        if self.kind == "hours":
            return "hours since 1978-01-01 00:00:00"
        if self.kind == "climatology":
            return f"days since {CLIMATOLOGY_YEAR}-01-01 00:00:00"
        return "days since 1978-01-01 00:00:00"

    def time_number(self, step: Step) -> int:
        """The value of the store's time coordinate for ``step`` (in :attr:`time_units`)."""
        if self.kind == "daily":
            return (_as_date(step) - _EPOCH_DAY).days
        if self.kind == "hours":
            return (_as_datetime(step) - _EPOCH_HOUR) // dt.timedelta(hours=1)
        if self.kind == "climatology":
            return (step - dt.date(CLIMATOLOGY_YEAR, 1, 1)).days
        return (step - _EPOCH_DAY).days

    def from_time_number(self, n: int) -> Step:
        if self.kind == "daily":
            return _EPOCH_DAY + dt.timedelta(days=int(n))
        if self.kind == "hours":
            return _EPOCH_HOUR + dt.timedelta(hours=int(n))
        if self.kind == "climatology":
            return dt.date(CLIMATOLOGY_YEAR, 1, 1) + dt.timedelta(days=int(n))
        return _EPOCH_DAY + dt.timedelta(days=int(n))

    def time_stamp(self, step: Step) -> dt.datetime:
        """The instant the time coordinate gives ``step`` (noon for days, as OISST)."""
        if self.kind == "daily":
            return dt.datetime.combine(_as_date(step), dt.time(12))
        return _as_datetime(step)

    @property
    def time_long_name(self) -> str:
        return {
            "daily": "time (noon UTC of each day)",
            "hours": f"time (start of each {self.hours}-hour step, UTC)",
            "monthly": "time (first day of each month)",
            "climatology": f"time (calendar month of a climatology; the year {CLIMATOLOGY_YEAR} is nominal)",
        }[self.kind]


DAILY = Cadence("daily")
MONTHLY = Cadence("monthly")
CLIMATOLOGY = Cadence("climatology")
HOURLY = Cadence("hours", 1)


def detect_cadence(stamps: Iterable[dt.datetime], climatology: bool = False) -> Cadence | None:
    """The step of a set of time stamps (None when fewer than two distinct ones).

    The smallest gap decides: under a day → ``Nh``; one day → daily; 28–31 days → monthly (or a
    climatology when ``climatology`` says the times carry no real year).  Any other gap raises
    ValueError with the gap.
    """
    ordered = sorted({_as_datetime(s) for s in stamps})
    if len(ordered) < 2:
        return CLIMATOLOGY if climatology and ordered else None
    gap = min(b - a for a, b in itertools.pairwise(ordered))
    hours = gap / dt.timedelta(hours=1)
    if hours < 24 and abs(hours - round(hours)) < 1e-6 and round(hours) >= 1:
        return Cadence("hours", round(hours))
    if abs(hours - 24) < 1e-6:
        return DAILY
    if 28 * 24 <= hours <= 31 * 24:
        return CLIMATOLOGY if climatology else MONTHLY
    raise ValueError(
        f"the time stamps are {gap} apart, which is no supported step (hours, days, months); "
        "set [archive] step to say which step the store should have"
    )


def _as_datetime(value: dt.date) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return dt.datetime(value.year, value.month, value.day)


def _as_date(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value
