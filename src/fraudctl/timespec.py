"""Times and durations as users type them on the command line (``--since 2026-11-01``,
``--window 5m``): parsed in one place, for the CLI and the services that take windows."""

from __future__ import annotations

from datetime import datetime


def parse_time_bound(option: str, text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO-8601 UTC timestamp, or a bare date ``YYYY-MM-DD`` meaning its midnight UTC
    (``end_of_day``: its last microsecond, for inclusive upper bounds)."""
    import re
    from datetime import UTC, timedelta

    from fraudctl.contract import parse_utc_timestamp
    from fraudctl.errors import UsageError

    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError as exc:
            raise UsageError(f"{option} {text!r} is not a date ({exc})") from exc
        return day + timedelta(days=1, microseconds=-1) if end_of_day else day
    try:
        return parse_utc_timestamp(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} {exc}", hint="or give a date: YYYY-MM-DD") from exc


_DURATION_PART = r"([0-9]+(?:\.[0-9]+)?)(d|h|m|s)"


def parse_duration(option: str, text: str) -> float:
    """Seconds of a duration like ``90s``, ``15m``, ``1h``, ``1h30m``, ``2d``."""
    import re

    from fraudctl.errors import UsageError

    cleaned = text.strip().lower()
    if not cleaned or re.fullmatch(f"(?:{_DURATION_PART})+", cleaned) is None:
        raise UsageError(
            f"{option} {text!r} is not a duration", hint="e.g. 90s, 15m, 1h, 1h30m, 2d"
        )
    unit = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    seconds = sum(float(n) * unit[u] for n, u in re.findall(_DURATION_PART, cleaned))
    if seconds <= 0:
        raise UsageError(f"{option} {text!r} must be longer than zero", hint="e.g. 1h")
    return seconds
