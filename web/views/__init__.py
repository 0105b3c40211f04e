"""Blueprints of the web app and what they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from flask import abort, current_app, request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

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
    try:
        number = max(1, int(request.args.get("page", "1")))
    except ValueError:
        number = 1
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = list(session.scalars(query.limit(size).offset((number - 1) * size)))
    return Page(items=items, number=number, size=size, total=int(total or 0))
