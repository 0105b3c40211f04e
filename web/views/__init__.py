"""Blueprints of the web app and what they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from flask import abort, current_app, request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter, Map

from archiver.archive import Archive
from archiver.settings import Settings


def archive() -> Archive:
    """The archive this app serves."""
    found: Archive = current_app.extensions["archive"]
    return found


def settings() -> Settings:
    """The settings this app was created with (the web.* ones may differ from the core's)."""
    found: Settings = current_app.extensions["settings"]
    return found


Row = TypeVar("Row")
ID_MAX = 2**63 - 1  # the largest integer the databases store (SQLite's INTEGER, BIGINT)


class IdConverter(IntegerConverter):
    """``<int:...>`` in a URL: a whole number the database can hold; a larger one matches no
    route (404) instead of failing in the driver."""

    def __init__(self, url_map: Map, fixed_digits: int = 0, min: int | None = None,
                 max: int | None = ID_MAX, signed: bool = False) -> None:
        super().__init__(url_map, fixed_digits, min, max, signed)


def query_int(name: str, minimum: int = 0) -> int | None:
    """The query parameter ``name`` as a whole number from ``minimum`` to ``ID_MAX``; None when
    absent or empty; a 400 answer for anything else (a sign, letters, too large)."""
    text = request.args.get(name, "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(ID_MAX))) \
            or not minimum <= int(text) <= ID_MAX:
        abort(400, f"{name} must be a whole number from {minimum} to {ID_MAX}")
    return int(text)


def row_or_404(session: Session, model: type[Row], row_id: int, what: str) -> Row:
    """The row with that ID, or a 404 answer saying there is no such ``what``."""
    found = session.get(model, row_id)
    if found is None:
        abort(404, f"no such {what}")
    return found


@dataclass
class Page:
    """One page of a query's results."""

    items: list[Any]
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        """Number of pages."""
        return max(1, -(-self.total // self.size))


def paginate(session: Session, query: Select[Any]) -> Page:
    """The page of ``query`` asked for by ``?page=`` (1-based), ``web.page_size`` rows long."""
    size: int = settings()["web.page_size"]
    number = query_int("page", minimum=1) or 1
    total = int(session.scalar(select(func.count()).select_from(
        query.order_by(None).subquery())) or 0)
    # Past the last page the page is empty; the offset stays within what the database takes.
    offset = min((number - 1) * size, total)
    items = list(session.scalars(query.limit(size).offset(offset)))
    return Page(items=items, number=number, size=size, total=total)
