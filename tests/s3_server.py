"""A real S3-compatible server on loopback for the object-storage tests: moto's server (the
same WSGI application its stand-alone ``moto_server`` runs), on port 0 in a thread, with a log
of the requests it answered so tests can see how records were read.

The ``s3`` fixture (tests/conftest.py) runs one for the whole test session.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

REGION = "us-east-1"
KEY_ID = "test-key"
SECRET = "test-secret"


@dataclass
class Seen:
    """One request the server answered."""

    method: str
    path: str
    range: str | None


@dataclass
class S3Server:
    """``with S3Server() as s3:`` runs the server; ``s3.new_bucket()`` makes an empty bucket."""

    requests: list[Seen] = field(default_factory=list)
    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> S3Server:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        backend = DomainDispatcherApplication(create_backend_app)

        def recording(environ: dict[str, Any], start_response: Any) -> Any:
            self.requests.append(Seen(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                      environ.get("HTTP_RANGE")))
            return backend(environ, start_response)

        self._server = make_server("127.0.0.1", 0, recording, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(timeout=10)

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET)

    def new_bucket(self) -> str:
        """Create a bucket with a name no other test uses; return the name."""
        name = f"warcs-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``."""
        answer = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in answer.get("Contents", []))

    def settings_for(self, bucket: str, prefix: str = "archive/warcs") -> dict[str, str]:
        """The storage settings (as make_settings keyword overrides) naming ``bucket``."""
        return {"storage__url": f"s3://{bucket}/{prefix}", "storage__endpoint_url": self.endpoint,
                "storage__region": REGION, "storage__access_key_id": KEY_ID,
                "storage__secret_access_key": SECRET}

