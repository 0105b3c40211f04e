"""Tiny web sites on loopback (port 0) for the demo, the tests and the benchmarks.

Each :class:`Site` is a real HTTP/1.1 server in a background thread with a table of routes.
Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

Handler = Callable[[Request], Response]


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log(self, type: str, message: str, *args: Any) -> None:
        """Keep test and demo output clean."""


class Site:
    """One loopback web site: routes by path (query string ignored unless routed exactly),
    or any WSGI app (e.g. the archive's own Flask app, for browser tests)."""

    def __init__(self, name: str = "site", host: str = "127.0.0.1",
                 app: Callable[..., Any] | None = None) -> None:
        self.name = name
        self.host = host
        self.app = app  # serve this WSGI app instead of the route table
        self.routes: dict[str, Handler] = {}
        self.fallback: Handler | None = None
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- building ------------------------------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        """Serve ``path`` (optionally with ``?query``) with ``handler``."""
        self.routes[path] = handler

    def page(self, path: str, body: str | bytes, status: int = 200,
             content_type: str = "text/html; charset=utf-8",
             headers: dict[str, str] | None = None) -> None:
        """Serve a fixed body."""
        data = body.encode("utf-8") if isinstance(body, str) else body

        def handler(_request: Request) -> Response:
            return Response(data, status=status, content_type=content_type,
                            headers=headers or {})

        self.route(path, handler)

    def redirect(self, path: str, target: str, status: int = 301) -> None:
        """Answer ``path`` with a redirect to ``target`` (absolute or site-relative)."""

        def handler(_request: Request) -> Response:
            location = target if "://" in target else self.url(target)
            return Response("", status=status, headers={"Location": location})

        self.route(path, handler)

    # -- serving -------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        full = request.path + (f"?{request.query_string.decode()}" if request.query_string
                               else "")
        with self._lock:
            self.hits[full] = self.hits.get(full, 0) + 1
        handler = self.routes.get(full) or self.routes.get(request.path) or self.fallback
        if handler is None:
            response = Response("<h1>Not Found</h1>", status=404,
                                content_type="text/html; charset=utf-8")
        else:
            response = handler(request)
        return response(environ, start_response)

    def start(self) -> Site:
        """Start serving on a free loopback port."""
        self._server = make_server(self.host, 0, self.app or self._app, threaded=True,
                                   request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"site-{self.name}", daemon=True)
        self._thread.start()
        self._port = int(self._server.server_port)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    @property
    def port(self) -> int:
        """The port the site listens (or, once stopped, listened) on."""
        assert self._port is not None, "site not started"
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running site."""
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """Absolute URL of a path on this site."""
        return self.base_url + path

    def __enter__(self) -> Site:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
