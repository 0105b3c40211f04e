"""The author's actions (login and CSRF token required): recheck, not broken, ignore domain."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from archiver import actions
from archiver.archive import Archive
from archiver.models import Link
from web.auth import login_required
from web.views import archive, row_or_404

blueprint = Blueprint("actions", __name__)
log = logging.getLogger(__name__)


def _back_to_link(link_id: int) -> Any:
    return redirect(url_for("pages.link", link_id=link_id))


@blueprint.post("/links/<int:link_id>/recheck")
@login_required
def recheck(link_id: int) -> Any:
    """Check a link now: the verdict when it comes within RECHECK_WAIT seconds, else the
    check goes on in the background and its verdict shows on the link's page."""
    with archive().db.session() as session:
        row_or_404(session, Link, link_id, "link")
    with _rechecking_lock:
        if link_id in _rechecking:
            flash("A check of this link is already running; its verdict will show here.")
            return _back_to_link(link_id)
        _rechecking.add(link_id)
    verdicts: list[str] = []
    worker = threading.Thread(target=_recheck_in_background,
                              args=(archive(), link_id, verdicts), daemon=True)
    worker.start()
    # A check of a hanging server takes (retries + 2) x fetch.timeout: longer than a proxy
    # waits for an answer, and longer than an author should stare at a spinner.
    worker.join(RECHECK_WAIT)
    if verdicts:
        flash(f"Checked again: {verdicts[0]}.")
    else:
        flash("Still checking (the site is slow to answer); the verdict will show here.")
    return _back_to_link(link_id)


RECHECK_WAIT = 10.0  # seconds a recheck request waits for its verdict
_rechecking: set[int] = set()  # links being rechecked by this process
_rechecking_lock = threading.Lock()


def _recheck_in_background(opened: Archive, link_id: int, verdicts: list[str]) -> None:
    try:
        verdicts.append(actions.recheck(opened, link_id))
    except Exception:  # the link went away, or the database did: logged, never raised
        log.exception("recheck of link #%d failed", link_id)
    finally:
        with _rechecking_lock:
            _rechecking.discard(link_id)


@blueprint.post("/links/<int:link_id>/not-broken")
@login_required
def not_broken(link_id: int) -> Any:
    """Overrule a false alarm until the site's answer changes."""
    with archive().db.session() as session:  # unknown: 404, as for the other link actions
        row_or_404(session, Link, link_id, "link")
    try:
        actions.mark_not_broken(archive(), link_id)
    except actions.ActionError as exc:
        abort(400, str(exc))
    flash("Marked as not broken; this holds until the site answers differently.")
    return _back_to_link(link_id)


@blueprint.post("/links/<int:link_id>/clear-override")
@login_required
def clear_override(link_id: int) -> Any:
    """Let the checks decide again."""
    try:
        actions.clear_override(archive(), link_id)
    except actions.ActionError as exc:
        abort(404, str(exc))
    flash("Override removed; the next check decides.")
    return _back_to_link(link_id)


@blueprint.get("/domains")
def domains() -> str:
    """Ignored domains."""
    return render_template("domains.html", domains=actions.ignored_domains(archive()))


@blueprint.post("/domains")
@login_required
def ignore() -> Any:
    """Ignore a domain."""
    try:
        domain = actions.ignore_domain(archive(), request.form.get("domain", ""))
    except actions.ActionError as exc:
        abort(400, str(exc))
    flash(f"Links to {domain} are no longer checked or reported.")
    return redirect(url_for("actions.domains"))


@blueprint.post("/domains/<domain>/delete")
@login_required
def unignore(domain: str) -> Any:
    """Stop ignoring a domain."""
    removed = actions.unignore_domain(archive(), domain)
    flash(f"Links to {removed} are checked again." if removed else f"{domain} was not ignored.")
    return redirect(url_for("actions.domains"))
