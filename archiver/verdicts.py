"""Shared enums that several layers use (the network layer must not import the models)."""

from enum import StrEnum


class Verdict(StrEnum):
    """The kind of one check's outcome; evidence is stored beside it."""

    OK = "ok"
    REDIRECT = "redirect"
    NOT_FOUND = "not_found"
    GONE = "gone"
    SERVER_ERROR = "server_error"
    CLIENT_ERROR = "client_error"
    DNS_ERROR = "dns_error"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_ERROR = "connection_error"
    TIMEOUT = "timeout"
    TLS_ERROR = "tls_error"
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    SOFT_404 = "soft_404"
    REDIRECT_TO_ROOT = "redirect_to_root"
    BLOCKED = "blocked"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN_ADDRESS = "forbidden_address"
    INVALID_URL = "invalid_url"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
