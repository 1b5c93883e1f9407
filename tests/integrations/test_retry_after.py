"""
The one ``Retry-After`` parser (``stormwall.integrations.httpx``).

Both forms of RFC 9110 §10.2.3 (delay-seconds and the three HTTP-date
formats), a date in the past, invalid values (negative, fractional,
non-ASCII digits, malformed dates), the cap on absurd values, and that the
demo reads the header with this same function.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest


httpx = pytest.importorskip("httpx")

from stormwall._demo import _client  # noqa: E402 - after the skip
from stormwall.integrations.httpx import (  # noqa: E402
    MAX_RETRY_AFTER,
    parse_retry_after,
)


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class TestDelaySeconds:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            pytest.param("120", 120.0, id="plain"),
            pytest.param("0", 0.0, id="zero"),
            pytest.param(" 7\t", 7.0, id="surrounding-space"),
            pytest.param("007", 7.0, id="leading-zeros"),
            pytest.param(str(2**31 - 1), float(2**31 - 1), id="below-cap"),
        ],
    )
    def test_valid(self, value, seconds):
        """Whole non-negative seconds are read as they are."""
        assert seconds == parse_retry_after(value, now=NOW)

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(str(2**31 + 1), id="just-above"),
            pytest.param("9" * 400, id="beyond-float"),
            pytest.param("9" * 5000, id="beyond-int-parsing"),
        ],
    )
    def test_capped(self, value):
        """Absurdly large values are capped, never an error or an inf."""
        assert MAX_RETRY_AFTER == parse_retry_after(value, now=NOW)


class TestHttpDate:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("Sun, 01 Mar 2026 12:00:30 GMT", id="imf-fixdate"),
            pytest.param("Sunday, 01-Mar-26 12:00:30 GMT", id="rfc850"),
            pytest.param("Sun Mar  1 12:00:30 2026", id="asctime"),
        ],
    )
    def test_future_date(self, value):
        """Every HTTP-date format gives the seconds until that date."""
        assert 30.0 == parse_retry_after(value, now=NOW)

    def test_past_date_is_zero(self):
        """A date in the past means: retry now."""
        past = format_datetime(NOW - timedelta(hours=1), usegmt=True)

        assert 0.0 == parse_retry_after(past, now=NOW)

    def test_far_future_date_is_capped(self):
        """A date centuries ahead is capped like a huge delay-seconds."""
        assert MAX_RETRY_AFTER == parse_retry_after(
            "Fri, 31 Dec 9999 23:59:59 GMT", now=NOW
        )

    def test_default_now_is_the_wall_clock(self):
        """Without ``now=``, a date is measured against the current time."""
        soon = format_datetime(
            datetime.now(UTC) + timedelta(hours=1), usegmt=True
        )

        assert 3500 < parse_retry_after(soon) <= 3600


class TestTwoDigitYears:
    """
    RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is the most
    recent past year with those digits; otherwise it is the year within 50
    years of now (the email parser's 1969-2068 rule read "70" as 1970).
    """

    @pytest.mark.parametrize(
        ("value", "year"),
        [
            pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", 1994, id="rfc-94"),
            pytest.param("Sunday, 01-Mar-26 12:00:30 GMT", 2026, id="now"),
            pytest.param("Monday, 01-Mar-70 12:00:00 GMT", 2070, id="70"),
            pytest.param(
                "Wednesday, 01-Mar-76 12:00:00 GMT", 2076, id="exactly-50"
            ),
            pytest.param(
                "Wednesday, 01-Mar-76 12:00:01 GMT", 1976, id="just-past-50"
            ),
            pytest.param("Sun, 01 Mar 70 12:00:00 GMT", 2070, id="rfc5322"),
        ],
    )
    def test_year(self, value, year):
        """The year is the one the RFC's rule gives, not the email one."""
        when = datetime(year, 3, 1, 12, 0, 0, tzinfo=UTC)
        if value.endswith("01 GMT"):
            when += timedelta(seconds=1)
        elif "06-Nov-94" in value:
            when = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
        elif "12:00:30" in value:
            when += timedelta(seconds=30)
        expected = min(max(0.0, (when - NOW).total_seconds()), MAX_RETRY_AFTER)

        assert expected == parse_retry_after(value, now=NOW)

    def test_century_follows_now(self):
        """Late in a century, a small year is in the next one."""
        late = datetime(2090, 1, 1, tzinfo=UTC)

        assert 3600.0 == parse_retry_after(
            "Sunday, 01-Jan-90 01:00:00 GMT", now=late
        )
        # 2130, 40 years ahead, not 2030, 60 years past.
        assert 40 * 365 * 86400 < parse_retry_after(
            "Wednesday, 01-Jan-30 00:00:00 GMT", now=late
        )

    def test_leap_day_the_century_lacks(self):
        """29 February '00 read as 1900 (no such day) is ignored."""
        assert None is parse_retry_after(
            "Thursday, 29-Feb-00 00:00:00 GMT",
            now=datetime(1940, 1, 1, tzinfo=UTC),
        )
        assert 0.0 == parse_retry_after(
            "Tuesday, 29-Feb-00 00:00:00 GMT", now=NOW
        )


class TestZonesAndNow:
    def test_offset_honoured(self):
        """A numeric offset is not GMT, but it names one instant."""
        assert 30.0 == parse_retry_after(
            "Sun, 01 Mar 2026 14:00:30 +0200", now=NOW
        )

    def test_zoneless_and_unknown_are_gmt(self):
        """asctime has no zone; "-0000" and unknown names read as GMT."""
        for zone in ("", " -0000", " XYZ"):
            value = f"Sun, 01 Mar 2026 12:00:30{zone}"
            assert 30.0 == parse_retry_after(value, now=NOW), zone

    def test_bad_offset_is_none(self):
        """An offset no clock has is a malformed date: ignored."""
        assert None is parse_retry_after(
            "Sun, 01 Mar 2026 12:00:30 +9999", now=NOW
        )

    def test_naive_now_is_utc(self):
        """A naive ``now`` is read as UTC, as a zoneless date is, instead
        of a TypeError from the subtraction."""
        naive = NOW.replace(tzinfo=None)

        assert 30.0 == parse_retry_after(
            "Sun, 01 Mar 2026 12:00:30 GMT", now=naive
        )


class TestInvalid:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("", id="empty"),
            pytest.param("soon", id="word"),
            pytest.param("-5", id="negative"),
            pytest.param("1.5", id="fraction"),
            pytest.param("+5", id="signed"),
            pytest.param("\N{SUPERSCRIPT TWO}", id="non-ascii-digit"),
            pytest.param("Sun, 31 Feb 2026 12:00:00 GMT", id="no-such-day"),
            pytest.param("Sun, 01 Mar 99999 12:00:00 GMT", id="year-range"),
            pytest.param("1e400", id="exponent"),
            pytest.param("-99999999999999999999", id="huge-negative"),
            pytest.param("Sun, 01 Mar 2026 12:00:30 +2400", id="offset-24h"),
        ],
    )
    def test_garbage_is_none(self, value):
        """An invalid header is ignored: the computed back-off applies."""
        assert None is parse_retry_after(value, now=NOW)

    def test_absent_is_none(self):
        """No header, no hint."""
        assert None is parse_retry_after(None)


def test_the_demo_uses_this_parser():
    """The demo reads Retry-After with the integration's one parser."""
    assert parse_retry_after is _client.parse_retry_after
