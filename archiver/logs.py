"""Logging: one line per event, as text or JSON, carrying the run and the link it is about.

A run sets its ID in a context variable that its worker threads inherit (jobs submit work with
``contextvars.copy_context().run``); log calls pass the link as ``extra={"link_id": ...}``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from archiver.errors import ArchiverError

RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
_STANDARD = set(vars(logging.makeLogRecord({})))


class ContextFilter(logging.Filter):
    """Adds the current run's ID to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; annotate it."""
        record.run = RUN_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run, link and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and key != "message":
                entry[key] = value
        if record.exc_info:
            error = _brief_error(record)
            entry["error"] = error if error is not None else self.formatException(
                record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Human lines, with ``[run link]`` when known."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as text."""
        tags = " ".join(f"{name}={value}" for name, value in (
            ("run", getattr(record, "run", None)), ("link", getattr(record, "link_id", None)))
            if value is not None)
        error = _brief_error(record)
        if error is not None:  # the message and the error on one line, no traceback
            record = logging.makeLogRecord(
                {**vars(record), "msg": f"{record.getMessage()}: {error}", "args": None,
                 "exc_info": None, "exc_text": None})
        line = super().format(record)
        return f"{line} [{tags}]" if tags else line


def _brief_error(record: logging.LogRecord) -> str | None:
    """The text of the record's error when it is logged without its traceback, else None."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, ArchiverError) and not error.log_traceback:
        return str(error)
    return None


def configure_logging(level: str, fmt: str) -> None:
    """Send logs to stderr in the chosen format (called once by the CLI)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
