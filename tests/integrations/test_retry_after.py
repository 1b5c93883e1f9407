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
