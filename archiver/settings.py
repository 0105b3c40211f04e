"""The one settings registry: every setting's name, type, default, help and secrecy.

Values are read from a TOML file, then from ``ARCHIVER_<SECTION>__<KEY>`` environment
variables, then from explicit overrides (CLI flags); later sources win.  Everything else
in the code base receives a :class:`Settings` object and never reads the environment.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_INT_RE = re.compile(r"^\s*[+-]?[0-9]+\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}
MAX_PREFIX = 64
_FILE_PREFIX_RE = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{MAX_PREFIX - 1}}}")

HOUR = 3600
DAY = 86400
# The longest duration any setting takes: now + 110% of it (with jitter) stays far inside
# datetime's year 9999, and a sleep or wait of it stays below threading.TIMEOUT_MAX.
MAX_DURATION = 36500 * DAY
GIB = 2**30
MAX_WEB_WORKERS = 128


def parse_duration(value: Any) -> float:
    """Parse ``0s``, ``90m``, ``3d``, ``1.5h`` or a bare number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 90m, 3d)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: Any) -> int:
    """Parse ``512kb``, ``50MiB`` or a bare number of bytes."""
    if isinstance(value, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise ValueError(f"not a size: {value!r} (use e.g. 10MB, 512KiB)")
        unit = match.group(2).lower() if match.group(2) else None
        size = int(match.group(1)) * _SIZE_UNITS[unit]
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


def parse_bool(value: Any) -> bool:
    """Parse a boolean from TOML or from an environment string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_int(value: Any) -> int:
    """Parse a whole number: a TOML integer or digits; floats (even 4.0) and booleans refused."""
    if isinstance(value, bool):
        raise ValueError("an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.match(value):
        return int(value)
    raise ValueError(f"not a whole number: {value!r}")


def parse_float(value: Any) -> float:
    """Parse a number (booleans refused)."""
    if isinstance(value, bool):
        raise ValueError("a number, not a boolean")
    return float(value)


def parse_str(value: Any) -> str:
    """Accept a string as is."""
    if not isinstance(value, str):
        raise ValueError(f"a string, not {type(value).__name__}")
    return value


def file_prefix(value: Any) -> None:
    """Validator: a plain file-name prefix that cannot name another folder or a hidden file."""
    if not _FILE_PREFIX_RE.fullmatch(value):
        raise ValueError(f"must be 1 to {MAX_PREFIX} letters, digits, '.', '_' or '-', "
                         f"not starting with '.', got {value!r}")


def header_value(value: Any) -> None:
    """Validator: text that can be sent as an HTTP header value (no control characters)."""
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"must not contain control characters (line breaks, tabs, NUL), "
                         f"got {value!r}")


def networks(value: Any) -> None:
    """Validator: comma-separated CIDR networks."""
    import ipaddress

    for part in str(value).split(","):
        if part.strip():
            ipaddress.ip_network(part.strip(), strict=False)


def http_url(value: Any) -> None:
    """Validator: empty, or an absolute http(s) URL with a host.  The value is not repeated in
    the error: a webhook URL often carries its token."""
    from urllib.parse import urlsplit

    text = str(value).strip()
    if text:
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be empty or an http(s) URL such as "
                             "https://hooks.example.org/dead-links")


def storage_url(value: Any) -> None:
    """Validator: empty (the local WARC folder) or an ``s3://bucket/prefix`` URL."""
    if value:
        from archiver.warc.remote import BucketAddress

        BucketAddress.parse(value)


def one_of(*choices: str) -> Callable[[Any], None]:
    """Validator factory: the value must be one of ``choices``."""

    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")

    return check


_KIND_WORDS = {"int": "an integer", "float": "a number", "duration": "a duration",
               "size": "a size"}
_KIND_HINTS = {"duration": " (e.g. 30s, 90m, 3d)", "size": " (e.g. 512KB, 50MB, 1GiB)"}


def format_duration(seconds: float) -> str:
    """Seconds in the largest unit that shows them exactly: ``1d``, ``90m``, ``250ms``."""
    if seconds == 0:
        return "0s"
    for unit, factor in (("d", DAY), ("h", HOUR), ("m", 60), ("s", 1)):
        if seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{round(seconds * 1000)}ms"


def format_size(size: int) -> str:
    """Bytes in the largest unit that shows them exactly: ``10GiB``, ``50MB``, ``300B``."""
    units = (("GiB", GIB), ("GB", 10**9), ("MiB", 2**20), ("MB", 10**6), ("KiB", 2**10),
             ("KB", 10**3))
    for unit, factor in units:
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


@dataclass(frozen=True)
class Setting:
    """One entry of the registry; numbers (int, float, duration, size) have a range."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    secret: bool = False
    validate: Callable[[Any], None] | None = None
    type_name: str = "str"
    low: float | None = None
    high: float | None = None

    def show(self, value: float) -> str:
        """A value of this setting written as its users write it."""
        if self.type_name == "duration":
            return format_duration(value)
        if self.type_name == "size":
            return format_size(int(value))
        return f"{value:g}" if self.type_name == "float" else str(int(value))

    def range_text(self) -> str:
        """The accepted range, ``1 to 1000`` or ``0s to 1d``; empty for unbounded settings."""
        if self.low is None or self.high is None:
            return ""
        return f"{self.show(self.low)} to {self.show(self.high)}"

    def accepts(self) -> str:
        """What a value must be, e.g. ``must be an integer from 1 to 1000``."""
        return (f"must be {_KIND_WORDS[self.type_name]} from {self.range_text()}"
                f"{_KIND_HINTS.get(self.type_name, '')}")

    def check_range(self, value: float) -> None:
        """Refuse a value outside the range, or not finite (inf and nan are never in it)."""
        if self.low is None or self.high is None:
            return
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise ValueError(self.accepts())


def _s(name: str, kind: str, default: Any, help: str, *,
       low: float | None = None, high: float | None = None, **extra: Any) -> Setting:
    parsers: dict[str, Callable[[Any], Any]] = {
        "str": parse_str, "int": parse_int, "bool": parse_bool, "float": parse_float,
        "duration": parse_duration, "size": parse_size,
    }
    return Setting(name=name, parse=parsers[kind], default=default, help=help, type_name=kind,
                   low=low, high=high, **extra)


REGISTRY: tuple[Setting, ...] = (
    _s("data_dir", "str", "./data",
       "Folder holding the database, the WARC files and the secret key."),
    _s("database_url", "str", "",
       "SQLAlchemy database URL. Empty means SQLite at <data_dir>/archiver.sqlite3.",
       secret=True),
    _s("secret_key", "str", "",
       "Key that signs web sessions. Empty means the one `archiver init` wrote to "
       "<data_dir>/secret.key; the web app refuses to start without either.", secret=True),
    _s("log_level", "str", "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.",
       validate=one_of("DEBUG", "INFO", "WARNING", "ERROR")),
    _s("log_format", "str", "text",
       "Log lines as human text or as JSON objects (one per line, with the link and run).",
       validate=one_of("text", "json")),
    _s("fetch.user_agent", "str",
       "link-archiver/0.1 (reference archiving)",
       "User-Agent sent with every outbound request.", validate=header_value),
    _s("fetch.timeout", "duration", "30s",
       "Deadline for one whole request (connect, headers and body, every redirect hop), not "
       "per read; waiting for a per-host politeness slot is not counted.",
       low=0.001, high=DAY),
    _s("fetch.max_body_bytes", "size", "50MB",
       "Largest response body kept; longer bodies are cut and marked truncated.",
       low=1, high=4 * GIB),
    _s("fetch.max_redirects", "int", 10, "Redirects followed before giving up.",
       low=0, high=100),
    _s("fetch.allow_private_networks", "bool", False,
       "Allow fetching loopback, private, link-local and other non-public addresses. "
       "Leave off unless every source is trusted."),
    _s("fetch.allowed_networks", "str", "",
       "Comma-separated private networks (CIDR) that may be fetched anyway, e.g. an intranet "
       "blog's 10.20.0.0/16; everything else non-public stays refused.",
       validate=networks),
    _s("fetch.concurrency", "int", 8, "Requests in flight at once across all hosts.",
       low=1, high=1000),
    _s("fetch.per_host_concurrency", "int", 2, "Requests in flight at once to one host.",
       low=1, high=1000),
    _s("fetch.per_host_delay", "duration", "1s",
       "Least time between the starts of two requests to the same host.", low=0, high=HOUR),
    _s("health.dead_after_failures", "int", 3,
       "Consecutive failed checks before a link is called dead.", low=1, high=1000),
    _s("health.failure_spacing", "duration", "3d",
       "Least time the failures must span before a link is called dead; also the "
       "recheck interval of a failing link.", low=0, high=MAX_DURATION),
    _s("health.recheck_alive", "duration", "7d", "How often a live link is checked again.",
       low=0, high=MAX_DURATION),
    _s("health.recheck_dead", "duration", "30d",
       "How often a dead link is checked again (dead links do come back).",
       low=0, high=MAX_DURATION),
    _s("health.retries", "int", 2,
       "Extra attempts, within one check, after a transient failure (timeout, 5xx, reset).",
       low=0, high=10),
    _s("health.retry_backoff", "duration", "2s",
       "Wait before the first retry within a check; doubles with each further retry.",
       low=0, high=HOUR),
    _s("health.batch_size", "int", 200, "Links one check run claims at most.",
       low=1, high=10000),
    _s("health.soft_404_similarity", "float", 0.85,
       "How alike (0-1) a page and the answer to a random sibling URL must be for the page "
       "to count as a soft 404.", low=0, high=1),
    _s("health.probe_cache", "duration", "1h",
       "How long the answer to a site's random-URL probe is reused, by this run and (kept "
       "in the database) by later runs and other workers.", low=0, high=MAX_DURATION),
    _s("health.drift_threshold", "float", 0.5,
       "Drift (0 = same text as the first capture, 1 = unrelated) above which a link is "
       "flagged as changed and captured again.", low=0, high=1),
    _s("health.check_history", "duration", "180d",
       "Checks older than this that only repeat the checks before and after them (the same "
       "success, status and final URL) are dropped daily, keeping the first and last of each "
       "run; failures are always kept. 0s keeps every check.", low=0, high=MAX_DURATION),
    _s("health.max_retry_after", "duration", "10s",
       "Longest Retry-After waited for within one check; longer ones move the next check.",
       low=0, high=DAY),
    _s("capture.recapture_interval", "duration", "30d",
       "How often an archived link is captured again (every capture is kept).",
       low=0, high=MAX_DURATION),
    _s("capture.requisites", "bool", True,
       "Also capture what an HTML page needs to render: images (lazy-loaded ones too), style "
       "sheets, fonts, scripts, media posters, and iframes and SVG documents one level deep "
       "(srcdoc included), on any host."),
    _s("capture.max_requisites", "int", 150, "Most requisites fetched for one page.",
       low=0, high=10000),
    _s("capture.max_page_bytes", "size", "60MB",
       "Most bytes fetched for one page with all its requisites.", low=1, high=16 * GIB),
    _s("capture.max_page_time", "duration", "120s",
       "Longest time spent capturing one page with its requisites.", low=0.001, high=DAY),
    _s("capture.max_media_bytes", "size", "25MB",
       "Largest audio or video file captured; larger ones are recorded as skipped.",
       low=1, high=4 * GIB),
    _s("capture.requisite_reuse", "duration", "15m",
       "A requisite captured this recently (a site's style sheet, say) is not fetched again "
       "for the next page; 0s fetches every page's requisites afresh.", low=0, high=MAX_DURATION),
    _s("capture.css_depth", "int", 3,
       "How deep style sheets that import style sheets are followed.", low=0, high=20),
    _s("capture.respect_robots", "bool", True,
       "Honour robots.txt, X-Robots-Tag and <meta name=robots content=noarchive> when "
       "capturing (checks are not captures and always run)."),
    _s("capture.retry_interval", "duration", "6h",
       "When to try again after a capture attempt that got nothing.", low=0, high=MAX_DURATION),
    _s("capture.batch_size", "int", 100, "Links one capture run claims at most.",
       low=1, high=10000),
    _s("capture.processes", "int", 0,
       "Processes a capture run spreads its links over, split by host, so that captures use "
       "more than one CPU core; 0 means one per core, at most 4. A process is started only "
       "for 40 links or more.", low=0, high=64),
    _s("capture.lease", "duration", "30m",
       "How long a claim on a link lasts before other runs may take the work over (a run "
       "renews its claims every third of this while it works).",
       low=0, high=MAX_DURATION),
    _s("warc.dir", "str", "", "Folder of the WARC files. Empty means <data_dir>/warcs."),
    _s("warc.prefix", "str", "archive",
       f"File name prefix of new WARC files: 1 to {MAX_PREFIX} letters, digits, '.', '_' or '-', "
       "not starting with '.'.", validate=file_prefix),
    _s("warc.max_file_bytes", "size", "1GB", "Size at which a new WARC file is begun.",
       low=1, high=100 * GIB),
    _s("storage.url", "str", "",
       "Where finished WARC files are kept: empty for the WARC folder itself, or S3-compatible "
       "object storage as s3://bucket/prefix (files are written in the WARC folder, uploaded "
       "when closed, and read back by byte range). Needs the s3 extra.",
       validate=storage_url),
    _s("storage.endpoint_url", "str", "",
       "Endpoint of S3-compatible storage other than AWS (MinIO, Ceph, R2). Empty: AWS."),
    _s("storage.region", "str", "", "Region of the bucket. Empty: the client's default."),
    _s("storage.access_key_id", "str", "",
       "Access key of the bucket. Empty: the usual AWS_* variables or ~/.aws files."),
    _s("storage.secret_access_key", "str", "",
       "Secret key of the bucket. Empty: the usual AWS_* variables or ~/.aws files.",
       secret=True),
    _s("scheduler.discover_interval", "duration", "1h",
       "How often the scheduler reads every source for new posts.", low=1, high=MAX_DURATION),
    _s("scheduler.tick_interval", "duration", "5m",
       "How often the scheduler captures and checks the links that are due.",
       low=1, high=MAX_DURATION),
    _s("queue.backend", "str", "inline",
       "Where the scheduler's work runs: inline (in the scheduler process) or celery "
       "(handed to `archiver worker` processes through queue.broker_url).",
       validate=one_of("inline", "celery")),
    _s("queue.broker_url", "str", "redis://127.0.0.1:6379/0",
       "Redis URL of the Celery broker (also keeps the per-host batch markers).",
       secret=True),
    _s("queue.host_batch_size", "int", 25,
       "Links of one host handed to a worker in one task; one batch per host is out at once.",
       low=1, high=10000),
    _s("notify.webhook_url", "str", "",
       "URL that receives a JSON POST listing links that became dead. Empty: no webhook.",
       secret=True, validate=http_url),
    _s("notify.smtp_host", "str", "", "SMTP server for the dead-link e-mail digest. Empty: "
       "no e-mail."),
    _s("notify.smtp_port", "int", 25, "SMTP port.", low=1, high=65535),
    _s("notify.smtp_user", "str", "", "SMTP user name (empty: no login)."),
    _s("notify.smtp_password", "str", "", "SMTP password.", secret=True),
    _s("notify.smtp_starttls", "bool", False, "Upgrade the SMTP connection with STARTTLS."),
    _s("notify.email_from", "str", "link-archiver@localhost", "Sender of the digest."),
    _s("notify.email_to", "str", "", "Recipients of the digest, comma-separated."),
    _s("web.host", "str", "127.0.0.1", "Address the web UI listens on."),
    _s("web.port", "int", 8000, "Port the web UI listens on.", low=1, high=65535),
    _s("web.workers", "int", 2,
       "Processes `archiver web` serves with (one listening socket); `archiver serve` uses "
       "one process, beside its scheduler.", low=1, high=MAX_WEB_WORKERS),
    _s("web.page_size", "int", 50, "Rows per page in the web UI's tables.", low=1, high=1000),
    _s("web.replay_origin", "str", "",
       "Origin (e.g. https://replay.example.org) that serves archived documents, apart from "
       "the UI's origin; both names must reach this app. Empty: same origin, sandboxed."),
    _s("web.replay_scripts", "bool", False,
       "Let archived pages run their scripts, always inside an opaque sandboxed origin "
       "that cannot reach the author's session."),
    _s("web.replay_cache_bytes", "size", "64MB",
       "Memory each web process may use to keep rendered archived documents (records never "
       "change, so a page asked for again is not rewritten again). 0 turns the cache off.",
       low=0, high=16 * GIB),
    _s("web.admin_password_hash", "str", "",
       "Hash of the author's password (make one with `archiver hash-password`). Empty: "
       "nobody can log in, so the author's actions are off.", secret=True),
    _s("web.login_attempts", "int", 5,
       "Login attempts allowed from one address per 15 minutes (a right password does "
       "not count).", low=1, high=1000),
    _s("web.session_lifetime", "duration", "12h",
       "How long the author's login lasts at most; logging out ends it at once, in every "
       "web process.", low=1, high=MAX_DURATION),
    _s("web.secure_cookies", "bool", False,
       "Send the session cookie over HTTPS only (its Secure flag): set when the UI is served "
       "over HTTPS."),
    _s("web.proxy_hops", "int", 0,
       "Reverse proxies in front of the web UI (nginx, Caddy) that set X-Forwarded-For, "
       "-Proto and -Host: with their number, the client's address (the login limit), the "
       "scheme and the host come from those headers. 0: the headers are ignored, as they "
       "must be without a proxy (anyone can send them).", low=0, high=10),
)

_BY_NAME = {setting.name: setting for setting in REGISTRY}
ENV_PREFIX = "ARCHIVER_"


def env_var_name(name: str) -> str:
    """Environment variable that sets ``name``: ``fetch.timeout`` -> ``ARCHIVER_FETCH__TIMEOUT``."""
    return ENV_PREFIX + name.replace(".", "__").upper()


class Settings(Mapping[str, Any]):
    """Effective, validated settings; read like a mapping: ``settings["fetch.timeout"]``."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def replace(self, **overrides: Any) -> Settings:
        """Copy with overrides given by setting name with ``__`` for dots."""
        values = dict(self._values)
        for key, raw in overrides.items():
            name = key.replace("__", ".")
            values[name] = _coerce(name, raw)
        return Settings(values)

    @property
    def data_dir(self) -> Path:
        """The data folder as an absolute path."""
        return Path(self["data_dir"]).expanduser().resolve()

    @property
    def database_url(self) -> str:
        """Database URL, defaulting to a SQLite file in the data folder."""
        url: str = self["database_url"]
        return url or f"sqlite:///{self.data_dir / 'archiver.sqlite3'}"

    @property
    def warc_dir(self) -> Path:
        """Folder of the WARC files."""
        configured: str = self["warc.dir"]
        return Path(configured).expanduser().resolve() if configured else self.data_dir / "warcs"

    def redacted(self) -> dict[str, Any]:
        """Every setting, secrets replaced by a marker when set."""
        return {
            name: ("<redacted>" if _BY_NAME[name].secret and value else value)
            for name, value in self._values.items()
        }


def _coerce(name: str, raw: Any) -> Any:
    setting = _BY_NAME.get(name)
    if setting is None:
        raise ConfigError(f"unknown setting {name!r}")
    try:
        value = setting.parse(raw)
        setting.check_range(value)
        if setting.validate:
            setting.validate(value)
    except (TypeError, ValueError, OverflowError) as exc:
        if not setting.range_text():
            raise ConfigError(f"{name}: {exc}") from exc
        # A number's error is always its range, whatever the parser tripped on.
        raise ConfigError(f"{name}: {setting.accepts()}, got {_shown(raw)}") from exc
    return value


def _shown(raw: Any) -> str:
    """A bad value for an error message: as typed when plain text, else its repr, cut short."""
    if isinstance(raw, int) and raw.bit_length() > 1000:  # Python refuses str() of huge ints
        return "an integer too long to show"
    plain = isinstance(raw, str) and raw and raw.isprintable() and raw.strip() == raw
    text = raw if plain else repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from defaults, a TOML file, the environment and overrides, in that order."""
    environ = os.environ if env is None else env
    values = {setting.name: _coerce(setting.name, setting.default) for setting in REGISTRY}
    if config_file is None and environ.get("ARCHIVER_CONFIG"):
        config_file = environ["ARCHIVER_CONFIG"]
    if config_file is not None:
        path = Path(config_file)
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an int too long
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        for name, raw in _flatten(table).items():
            values[name] = _coerce(name, raw)
    for setting in REGISTRY:
        var = env_var_name(setting.name)
        if var in environ:
            values[setting.name] = _coerce(setting.name, environ[var])
    for name, raw in (overrides or {}).items():
        if raw is not None:
            values[name] = _coerce(name, raw)
    return Settings(values)


def _kind(setting: Setting) -> str:
    """The type with its range, as the docs show it: ``int, 1 to 1000``."""
    accepted = setting.range_text()
    return f"{setting.type_name}, {accepted}" if accepted else setting.type_name


def describe(setting: Setting) -> str:
    """One setting as commented TOML, for the example config file."""
    default = setting.default
    literal = (
        ("true" if default else "false") if isinstance(default, bool)
        else str(default) if isinstance(default, int | float)
        else '"' + str(default).replace("\\", "\\\\").replace('"', '\\"') + '"'
    )
    key = setting.name.rsplit(".", 1)[-1]
    return f"# {setting.help} ({_kind(setting)}; env {env_var_name(setting.name)})\n" \
           f"# {key} = {literal}\n"


def example_config() -> str:
    """The example settings file: every setting, its help and its default, commented out."""
    lines = [
        "# link-archiver settings. Every setting, its help and its default.",
        "# Uncomment to change. Durations: 0s, 90m, 3d. Sizes: 512KB, 50MB, 1GiB.",
        "# Environment variables override this file; CLI flags override both.",
        "",
    ]
    section = ""
    for setting in REGISTRY:
        current = setting.name.rsplit(".", 1)[0] if "." in setting.name else ""
        if current != section:
            section = current
            lines.append(f"[{section}]")
        lines.append(describe(setting))
    return "\n".join(lines)


def settings_markdown() -> str:
    """Every setting as a Markdown table, for the README."""
    rows = ["| Setting | Type | Default | What it does |", "|---|---|---|---|"]
    for setting in REGISTRY:
        default = setting.default
        shown = (f"`{str(default).lower()}`" if isinstance(default, bool)
                 else f"`{default}`" if default != "" else "(empty)")
        kind = _kind(setting) + (" (secret)" if setting.secret else "")
        rows.append(f"| `{setting.name}` | {kind} | {shown} | {setting.help} |")
    return "\n".join(rows)
