"""The one outbound HTTP module: every fetch the archiver makes goes through ``HttpClient``."""

from archiver.net.client import Exchange, FetchError, FetchResult, HttpClient

__all__ = ["Exchange", "FetchError", "FetchResult", "HttpClient"]
