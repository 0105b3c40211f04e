"""The author's login, CSRF protection and login rate limiting.

There is one author; the password's hash lives in the settings (``web.admin_password_hash``).
Every state-changing request must carry the session's CSRF token, logged in or not.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.security import check_password_hash

blueprint = Blueprint("auth", __name__)
Fn = TypeVar("Fn", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_WINDOW = 15 * 60


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


def is_author() -> bool:
    """True when the request comes from the logged-in author."""
    return bool(session.get("author"))


def login_required(view: Fn) -> Fn:
    """Only the logged-in author may use this view."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_author():
            abort(403, "log in as the author to do this")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class LoginLimiter:
    """Failed logins per client address in a sliding window."""

    def __init__(self, allowed: int, window: float = LOGIN_WINDOW) -> None:
        self.allowed = allowed
        self.window = window
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, address: str) -> bool:
        """True when ``address`` used up its attempts."""
        with self._lock:
            failures = self._failures[address]
            while failures and time.monotonic() - failures[0] > self.window:
                failures.popleft()
            return len(failures) >= self.allowed

    def failed(self, address: str) -> None:
        """Count one failed attempt."""
        with self._lock:
            self._failures[address].append(time.monotonic())


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Log the author in with the configured password."""
    settings = current_app.extensions["settings"]
    limiter: LoginLimiter = current_app.extensions["login_limiter"]
    password_hash: str = settings["web.admin_password_hash"]
    if request.method == "GET":
        return render_template("login.html", enabled=bool(password_hash))
    address = request.remote_addr or "unknown"
    if limiter.blocked(address):
        abort(429, "too many failed logins; wait a few minutes")
    password = request.form.get("password", "")
    if not password_hash or not check_password_hash(password_hash, password):
        limiter.failed(address)
        flash("Wrong password.")
        return render_template("login.html", enabled=bool(password_hash)), 401
    session.clear()  # a fresh session (and CSRF token) after login
    session["author"] = True
    target = request.args.get("next", "")
    return redirect(target if target.startswith("/") and not target.startswith("//")
                    else url_for("pages.dashboard"))


@blueprint.post("/logout")
def logout() -> Any:
    """Log out."""
    session.clear()
    return redirect(url_for("pages.dashboard"))


def install(app: Flask) -> None:
    """Wire CSRF checks, the template helpers and the login limiter into ``app``."""
    settings = app.extensions["settings"]
    app.extensions["login_limiter"] = LoginLimiter(settings["web.login_attempts"])
    app.before_request(check_csrf)
    app.jinja_env.globals.update(csrf_token=csrf_token, is_author=is_author)
    app.register_blueprint(blueprint)
