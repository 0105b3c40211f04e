"""The one source of "now": naive UTC datetimes everywhere in the database."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current time as a naive UTC datetime (the form stored in the database)."""
    return datetime.now(UTC).replace(tzinfo=None)


def warc_timestamp(moment: datetime) -> str:
    """14-digit Wayback timestamp for a naive UTC datetime."""
    return moment.strftime("%Y%m%d%H%M%S")


def parse_warc_date(text: str) -> datetime:
    """Parse a WARC-Date (ISO 8601, ``Z`` suffix, optional fraction) into naive UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
