"""The author's login, CSRF protection and login rate limiting.

There is one author; the password's hash lives in the settings (``web.admin_password_hash``).
Every state-changing request must carry the session's CSRF token, logged in or not.
A login lives in the database (``author_sessions``; the signed cookie holds only a random ID)
so logging out ends it for every copy of the cookie, in every web process; login attempts are
kept there too, so the limit holds across parallel requests and processes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash

from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.models import AuthorSession, LoginAttempt

blueprint = Blueprint("auth", __name__)
Fn = TypeVar("Fn", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_WINDOW = timedelta(minutes=15)
SESSION_KEY = "sid"  # the signed cookie's key for the login's random ID
# Characters browsers drop from or reinterpret in a URL ("/\t/host" becomes "//host"): a
# ``next`` with any of them is refused, as is any other control character.
_UNSAFE_IN_NEXT = frozenset("\\" + "".join(map(chr, range(0x20))) + "\x7f")


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    """Refuse a state-changing request that lacks the session's token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(400, "missing or wrong CSRF token: reload the page and try again")


def _archive() -> Archive:
    archive: Archive = current_app.extensions["archive"]
    return archive


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _session_is_live(session_id: Any) -> bool:
    """One primary-key lookup: the login exists and has not expired."""
    if not isinstance(session_id, str) or not session_id:
        return False
    with _archive().db.session() as db:
        row = db.get(AuthorSession, _id_hash(session_id))
        return row is not None and row.expires_at > utcnow()


def is_author() -> bool:
    """True when the request comes from the logged-in author (looked up once per request)."""
    if "is_author" not in g:
        g.is_author = _session_is_live(session.get(SESSION_KEY))
    return bool(g.is_author)


def login_required(view: Fn) -> Fn:
    """Only the logged-in author may use this view."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_author():
            abort(403, "log in as the author to do this")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def start_session(archive: Archive, lifetime: float) -> str:
    """Record a new login lasting ``lifetime`` seconds and return its random ID; expired
    logins are removed on the way."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with archive.db.session() as db:
        db.execute(delete(AuthorSession).where(AuthorSession.expires_at <= now))
        db.add(AuthorSession(id_hash=_id_hash(session_id), created_at=now,
                             expires_at=now + timedelta(seconds=lifetime)))
    return session_id


def end_session(archive: Archive, session_id: Any) -> None:
    """Forget the login ``session_id`` (no matter whether it exists)."""
    if isinstance(session_id, str) and session_id:
        with archive.db.session() as db:
            db.execute(delete(AuthorSession).where(
                AuthorSession.id_hash == _id_hash(session_id)))


def reserve_attempt(archive: Archive, address: str, allowed: int) -> int | None:
    """Record a login attempt from ``address`` before its password is checked, and return its
    ID; None when it is over the limit of ``allowed`` in the window.

    The attempt is committed before the attempts are counted, so of any number of parallel
    attempts (in any process) at most ``allowed`` see a count within the limit. Attempts older
    than the window are removed on the way; a refused attempt is not kept.
    """
    now = utcnow()
    since = now - LOGIN_WINDOW
    with archive.db.session() as db:
        db.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < since))
        attempt = LoginAttempt(address=address, attempted_at=now)
        db.add(attempt)
    with archive.db.session() as db:
        count = db.scalar(select(func.count()).select_from(LoginAttempt).where(
            LoginAttempt.address == address, LoginAttempt.attempted_at >= since)) or 0
    if count <= allowed:
        return attempt.id
    release_attempt(archive, attempt.id)  # refused unchecked: it must not prolong the lockout
    return None


def release_attempt(archive: Archive, attempt_id: int) -> None:
    """Forget a reserved attempt (its password was right: it is not a failure)."""
    with archive.db.session() as db:
        db.execute(delete(LoginAttempt).where(LoginAttempt.id == attempt_id))


def safe_next(target: str) -> str | None:
    """``target`` when it is a path on this site, else None (no open redirect)."""
    if not target or any(char in _UNSAFE_IN_NEXT for char in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") \
            or parts.path.startswith("//"):
        return None
    return target


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Log the author in with the configured password."""
    settings = current_app.extensions["settings"]
    password_hash: str = settings["web.admin_password_hash"]
    if request.method == "GET":
        return render_template("login.html", enabled=bool(password_hash))
    archive = _archive()
    address = (request.remote_addr or "unknown")[:255]
    attempt = reserve_attempt(archive, address, settings["web.login_attempts"])
    if attempt is None:
        abort(429, "too many failed logins; wait a few minutes")
    password = request.form.get("password", "")
    if not password_hash or not check_password_hash(password_hash, password):
        flash("Wrong password.")
        return render_template("login.html", enabled=bool(password_hash)), 401
    release_attempt(archive, attempt)
    end_session(archive, session.get(SESSION_KEY))
    session.clear()  # a fresh session (and CSRF token) after login
    session[SESSION_KEY] = start_session(archive, settings["web.session_lifetime"])
    g.pop("is_author", None)
    return redirect(safe_next(request.args.get("next", "")) or url_for("pages.dashboard"))


@blueprint.post("/logout")
def logout() -> Any:
    """Log out: the login ends for every copy of the cookie."""
    end_session(_archive(), session.get(SESSION_KEY))
    session.clear()
    g.pop("is_author", None)
    return redirect(url_for("pages.dashboard"))


def install(app: Flask) -> None:
    """Wire CSRF checks and the template helpers into ``app``."""
    app.before_request(check_csrf)
    app.jinja_env.globals.update(csrf_token=csrf_token, is_author=is_author)
    app.register_blueprint(blueprint)
