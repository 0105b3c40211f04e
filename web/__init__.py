"""The Flask web UI: dashboard, posts, links, JSON API and replay of archived copies."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from archiver.archive import SECRET_KEY_FILE, Archive
from archiver.errors import ConfigError, MissingFileError, StorageError
from archiver.settings import Settings
from archiver.urls import FETCHABLE_SCHEMES, scheme_of

UI_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
}


def live_href(url: str) -> str:
    """``url`` for an ``href`` to the live web when it is an http(s) URL, else "#" (a stored
    URL with another scheme, ``javascript:`` say, must not become a link)."""
    return url if scheme_of(url) in FETCHABLE_SCHEMES else "#"


def load_secret_key(settings: Settings) -> str:
    """The session signing key from settings or the data folder; refuse to run without one."""
    configured: str = settings["secret_key"]
    if configured:
        return configured
    key_file = Path(settings.data_dir) / SECRET_KEY_FILE
    if key_file.exists():
        key = key_file.read_text(encoding="utf-8").strip()
        if key:
            return key
    raise ConfigError("no secret key: set secret_key (env ARCHIVER_SECRET_KEY) or run "
                      "`archiver init`, which writes one to the data folder")


def routing_first() -> None:
    """Answer a request that matches no route (404) or not with its method (405) before any
    other check looks at it: a POST to a page is "method not allowed", not "no CSRF token"."""
    if request.routing_exception is not None:
        current_app.raise_routing_exception(request)


def create_app(settings: Settings, archive: Archive | None = None) -> Flask:
    """Build the web app for ``settings``; ``archive`` is opened from them when not given."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=load_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings["web.secure_cookies"],
        JSON_SORT_KEYS=False,
    )
    hops = settings["web.proxy_hops"]
    if hops:  # behind a proxy every client would otherwise share its address and scheme
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops)
    app.url_map.merge_slashes = False  # keep the "//" of archived URLs in /web/ paths
    app.url_map.strict_slashes = False
    app.extensions["archive"] = archive or Archive.open(settings)
    app.extensions["settings"] = settings
    app.jinja_env.filters["live_href"] = live_href

    from web import auth
    from web.views import IdConverter, actions, api, embed, ops, pages, replay

    app.url_map.converters["int"] = IdConverter  # before any route is added
    app.before_request(replay.refuse_ui_on_replay_origin)
    app.before_request(routing_first)  # before the CSRF check: a 404 or 405 says more
    auth.install(app)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(actions.blueprint)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(replay.blueprint)
    app.register_blueprint(embed.blueprint)

    @app.after_request
    def security_headers(response: Response) -> Response:
        # Archived documents and their frame page set a policy of their own; every other
        # answer, under /web/ too (not archived, errors, redirects), is the UI's.
        if not request.path.startswith("/web/") or \
                "Content-Security-Policy" not in response.headers:
            for name, value in UI_SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        status = error.code or 500
        # What the error itself says besides its page (a 416's Content-Range: */length, a
        # 405's Allow) goes along with the page rendered here.
        extra = [(name, value) for name, value in error.get_headers()
                 if name.lower() not in {"content-type", "content-length"}]
        if request.path.startswith("/api/"):
            return jsonify({"error": {"status": status, "message": error.description}}), \
                status, extra
        return render_template("error.html", status=status, message=error.description), \
            status, extra

    @app.errorhandler(StorageError)
    def storage_error(error: StorageError) -> Any:
        # A WARC file that cannot be read (object storage down, a file gone): the server's
        # fault, not the reader's; the details (paths, bucket) go to the log, not the page.
        logging.getLogger(__name__).error("storage error on %s: %s", request.path, error)
        if isinstance(error, MissingFileError):  # lost, not unreachable: no use trying again
            status, message = 500, "The WARC file holding this archived copy is missing."
        else:
            status, message = 503, "The archive's storage cannot be read right now."
        if request.path.startswith("/api/"):
            return jsonify({"error": {"status": status, "message": message}}), status
        return render_template("error.html", status=status, message=message), status

    return app
