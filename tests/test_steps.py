"""Time steps of every cadence: names, ranges, labels, detection, runs of missing steps, and the
reader's time decoding (year-0 climatologies, non-standard calendars)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipeline.errors import ArchiveError
from pipeline.readers import decode_times
from pipeline.seeding import day_rng
from pipeline.steps import (
    CLIMATOLOGY,
    DAILY,
    HOURLY,
    MONTHLY,
    Cadence,
    describe_runs,
    detect_cadence,
    parse_step,
    step_label,
)

D = dt.date
T = dt.datetime


@pytest.mark.parametrize(("text", "code"), [
    ("1D", "1D"), ("daily", "1D"), ("1h", "1h"), ("3h", "3h"), ("6H", "6h"), ("1MS", "1MS"),
    ("monthly", "1MS"), ("climatology", "climatology"),
])
def test_names_parse_to_one_code(text, code):
    assert Cadence.parse(text).code == code
    assert Cadence.parse(code) == Cadence.parse(text)


@pytest.mark.parametrize("bad", ["2D", "0h", "24h", "weekly", "1W"])
def test_unknown_steps_are_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="expected '1D'"):
        Cadence.parse(bad)


def test_steps_between_dates_cover_whole_days_on_an_hourly_axis():
    steps = HOURLY.steps(D(2019, 3, 1), D(2019, 3, 2))
    assert len(steps) == 48 and steps[0] == T(2019, 3, 1, 0) and steps[-1] == T(2019, 3, 2, 23)
    assert Cadence.parse("3h").steps(T(2019, 3, 1, 4), T(2019, 3, 1, 12)) == [
        T(2019, 3, 1, 3), T(2019, 3, 1, 6), T(2019, 3, 1, 9), T(2019, 3, 1, 12)]
    assert DAILY.steps(D(2020, 2, 27), D(2020, 3, 1)) == [D(2020, 2, 27), D(2020, 2, 28), D(2020, 2, 29), D(2020, 3, 1)]
    assert MONTHLY.steps(D(2010, 11, 15), D(2011, 2, 3)) == [D(2010, 11, 1), D(2010, 12, 1), D(2011, 1, 1), D(2011, 2, 1)]
    assert CLIMATOLOGY.steps(D(2000, 1, 1), D(2000, 12, 31)) == [D(2000, m, 1) for m in range(1, 13)]
    assert CLIMATOLOGY.steps(D(2019, 11, 1), D(2020, 2, 1)) == [D(2000, m, 1) for m in (1, 2, 11, 12)]
    with pytest.raises(ValueError, match="before start"):
        HOURLY.steps(D(2019, 3, 2), D(2019, 3, 1))


def test_offsets_and_time_numbers_round_trip():
    for cadence, first in ((DAILY, D(2010, 1, 1)), (HOURLY, T(2019, 3, 1, 0)), (MONTHLY, D(2010, 1, 1)),
                           (Cadence.parse("6h"), T(2019, 3, 1, 6)), (CLIMATOLOGY, D(2000, 1, 1))):
        n = 11
        later = cadence.shift(first, n)
        assert cadence.offset(first, later) == n
        assert cadence.from_time_number(cadence.time_number(later)) == later
    assert DAILY.time_number(D(1978, 1, 2)) == 1  # the daily-only releases' 'days since 1978-01-01 12:00'
    assert MONTHLY.shift(D(2010, 12, 1), 1) == D(2011, 1, 1)


def test_labels_keep_daily_names_and_name_hours():
    assert step_label(D(2019, 3, 1)) == "2019-03-01"
    assert step_label(T(2019, 3, 1, 5)) == "2019-03-01T05"
    for step in (D(2019, 3, 1), T(2019, 3, 1, 5)):
        assert parse_step(step_label(step)) == step
        assert type(parse_step(step_label(step))) is type(step)


def test_detection_from_gaps():
    hours = [T(2019, 3, 1, h) for h in range(5)]
    assert detect_cadence(hours) == HOURLY
    assert detect_cadence([T(2019, 3, 1, h) for h in (0, 6, 12)]) == Cadence.parse("6h")
    assert detect_cadence([T(2010, 1, 1), T(2010, 1, 2)]) == DAILY
    assert detect_cadence([T(2010, m, 16) for m in (1, 2, 3)]) == MONTHLY
    assert detect_cadence([T(2000, m, 16) for m in (1, 2, 3)], climatology=True) == CLIMATOLOGY
    assert detect_cadence([T(2010, 1, 1)]) is None
    with pytest.raises(ValueError, match="no supported step"):
        detect_cadence([T(2010, 1, 1), T(2010, 1, 8)])


def test_missing_steps_are_one_line_per_run():
    missing = [D(2010, 7, 2) + dt.timedelta(days=i) for i in range(364)] + [D(2012, 1, 5)]
    assert describe_runs(missing, DAILY) == ["2010-07-02 … 2011-06-30: 364 steps", "2012-01-05: 1 step"]
    months = [D(2011, m, 1) for m in (3, 4, 5, 9)]
    assert describe_runs(months, MONTHLY) == ["2011-03-01 … 2011-05-01: 3 steps", "2011-09-01: 1 step"]


def test_year_zero_units_decode_as_a_climatology():
    hours = np.array([(dt.datetime(2000, m, 16) - dt.datetime(2000, 1, 1)).total_seconds() / 3600 for m in range(1, 13)])
    stamps, climatology = decode_times(hours, "hour since 0000-01-01 00:00:00", None, "clim.cdf")
    assert climatology
    assert [s.month for s in stamps] == list(range(1, 13))
    # the same values against a real year are real dates, not a climatology
    stamps, climatology = decode_times(hours, "hours since 2001-01-01", "standard", "x.nc")
    assert not climatology and stamps[0] == T(2001, 1, 16)


def test_non_standard_calendars_decode_or_say_why():
    stamps, _ = decode_times(np.array([0.0, 59.0]), "days since 2001-01-01", "noleap", "x.nc")
    assert stamps == [T(2001, 1, 1), T(2001, 3, 1)]
    with pytest.raises(ArchiveError, match="no date in the standard calendar"):
        decode_times(np.array([59.0]), "days since 2001-01-01", "360_day", "x.nc")  # 30 February
    with pytest.raises(ArchiveError, match=r"x\.nc: time cannot be decoded"):
        decode_times(np.array([0.0]), "days since the start", None, "x.nc")


def test_each_hour_draws_its_own_sensors_and_days_keep_their_streams():
    a = day_rng(0, T(2019, 3, 1, 0)).integers(0, 1 << 30, 4)
    b = day_rng(0, T(2019, 3, 1, 1)).integers(0, 1 << 30, 4)
    assert not np.array_equal(a, b)
    # a daily step keeps the stream of the daily-only releases: SeedSequence([seed, ordinal])
    old = np.random.default_rng(np.random.SeedSequence([0, D(2019, 3, 1).toordinal()])).integers(0, 1 << 30, 4)
    assert np.array_equal(day_rng(0, D(2019, 3, 1)).integers(0, 1 << 30, 4), old)
