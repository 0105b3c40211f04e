"""S3-compatible object storage for finished WARC files (``storage.url = s3://bucket/prefix``).

Workers write each WARC file in their local WARC folder (the spool) as always; when a file is
closed it is uploaded here and the local copy removed.  Readers ask for a record by byte range
(``Range: bytes=offset-end``), so replay never downloads a whole file; reindex, verify and
export, which read files end to end, download one file at a time to a temporary file.

boto3 is the client (an optional extra, ``link-archiver[s3]``): it speaks every S3-compatible
store (AWS, MinIO, Ceph, Garage, R2) with their signing, retries and multipart uploads, none
of which is worth writing again.  Storage traffic goes to the operator's own storage endpoint,
so it does not pass through the guarded HTTP client that fetches the web.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from archiver.errors import ConfigError, MissingFileError, StorageError
from archiver.warc.reader import Readable

if TYPE_CHECKING:
    from archiver.settings import Settings

SCHEME = "s3"


@dataclass(frozen=True)
class BucketAddress:
    """Where the files live: a bucket and a key prefix (no leading or trailing slash)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> BucketAddress:
        """Read ``s3://bucket/prefix``; raise ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme != SCHEME or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"must look like s3://bucket/prefix, not {url!r}")
        return cls(bucket=parts.netloc, prefix=parts.path.strip("/"))

    def key_of(self, name: str) -> str:
        """The object key of a WARC file name."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def name_of(self, key: str) -> str | None:
        """The WARC file name of an object key under the prefix, or None."""
        head = f"{self.prefix}/" if self.prefix else ""
        if not key.startswith(head) or "/" in key[len(head):]:
            return None
        return key[len(head):]


class RemoteStorage:
    """Finished WARC files in an S3-compatible bucket; safe to share between threads."""

    def __init__(self, address: BucketAddress, *, endpoint_url: str = "", region: str = "",
                 access_key_id: str = "", secret_access_key: str = "") -> None:
        self.address = address
        self._options = {"endpoint_url": endpoint_url or None, "region_name": region or None,
                         "aws_access_key_id": access_key_id or None,
                         "aws_secret_access_key": secret_access_key or None}
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteStorage | None:
        """The bucket ``storage.url`` names, or None when files stay in the local folder."""
        url: str = settings["storage.url"]
        if not url:
            return None
        return cls(BucketAddress.parse(url), endpoint_url=settings["storage.endpoint_url"],
                   region=settings["storage.region"],
                   access_key_id=settings["storage.access_key_id"],
                   secret_access_key=settings["storage.secret_access_key"])

    def __repr__(self) -> str:
        return f"RemoteStorage(s3://{self.address.bucket}/{self.address.prefix})"

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError as exc:
                    raise ConfigError("storage.url names S3 storage but boto3 is not "
                                      "installed: pip install 'link-archiver[s3]'") from exc
                # Stores other than AWS (MinIO, Ceph, a test server) expect path-style URLs.
                style = "path" if self._options["endpoint_url"] else "auto"
                config = Config(retries={"mode": "standard", "max_attempts": 5},
                                connect_timeout=10, read_timeout=60,
                                s3={"addressing_style": style})
                self._client = boto3.session.Session().client("s3", config=config,
                                                              **self._options)
            return self._client

    def _call(self, what: str, name: str, action: Any) -> Any:
        """Run one storage call, turning the client's errors into StorageError."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return action()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise MissingFileError(f"{name} is not in {self}") from exc
            raise StorageError(f"cannot {what} {name} in {self}: {exc}") from exc
        except (Boto3Error, BotoCoreError, OSError) as exc:
            raise StorageError(f"cannot {what} {name} in {self}: {exc}") from exc

    def check(self) -> None:
        """Raise StorageError unless the bucket can be reached with these credentials."""
        self._call("reach", self.address.bucket, lambda: self._s3().head_bucket(
            Bucket=self.address.bucket))

    @contextmanager
    def open_range(self, name: str, offset: int, length: int) -> Iterator[Readable]:
        """``length`` bytes of file ``name`` from ``offset`` (one ranged GET), as a stream
        read as it is consumed."""
        if length <= 0:
            yield io.BytesIO()
            return
        answer = self._call("read", name, lambda: self._s3().get_object(
            Bucket=self.address.bucket, Key=self.address.key_of(name),
            Range=f"bytes={offset}-{offset + length - 1}"))
        body = answer["Body"]
        try:
            yield _Body(self, name, body)
        finally:
            body.close()

    def size(self, name: str) -> int | None:
        """The size of file ``name`` in bytes, or None when the bucket has no such file."""
        try:
            answer = self._call("look up", name, lambda: self._s3().head_object(
                Bucket=self.address.bucket, Key=self.address.key_of(name)))
        except MissingFileError:
            return None
        return int(answer["ContentLength"])

    def sizes(self) -> dict[str, int]:
        """Every WARC file under the prefix with its size (one listing, no request per file)."""
        prefix = self.address.key_of("")

        def listing() -> dict[str, int]:
            found: dict[str, int] = {}
            pages = self._s3().get_paginator("list_objects_v2").paginate(
                Bucket=self.address.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    name = self.address.name_of(item["Key"])
                    if name and name.endswith((".warc.gz", ".warc")):
                        found[name] = int(item["Size"])
            return found

        return dict(self._call("list", prefix or "/", listing))

    def upload(self, path: Path, name: str) -> None:
        """Store the local file ``path`` as ``name`` and check the stored size."""
        key = self.address.key_of(name)
        self._call("upload", name, lambda: self._s3().upload_file(
            str(path), self.address.bucket, key))
        stored = self.size(name)
        if stored != path.stat().st_size:
            raise StorageError(f"upload of {name} to {self} stored {stored} bytes, "
                               f"not {path.stat().st_size}")

    def download(self, name: str, path: Path) -> None:
        """Copy file ``name`` to the local file ``path``."""
        self._call("download", name, lambda: self._s3().download_file(
            self.address.bucket, self.address.key_of(name), str(path)))

    def delete(self, name: str) -> None:
        """Remove file ``name`` (used to undo an import that failed)."""
        self._call("delete", name, lambda: self._s3().delete_object(
            Bucket=self.address.bucket, Key=self.address.key_of(name)))


class _Body:
    """A ranged GET's body, read chunk by chunk, its errors turned into StorageError."""

    def __init__(self, storage: RemoteStorage, name: str, body: Any) -> None:
        self._storage = storage
        self._name = name
        self._body = body

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of the body."""
        data: bytes = self._storage._call("read", self._name, lambda: self._body.read(
            size if size >= 0 else None))
        return data
