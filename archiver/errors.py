"""Typed errors shared by the core; the CLI maps each to a message and an exit code."""


class ArchiverError(Exception):
    """Base of every error the archiver raises on purpose."""

    exit_code = 1
    # Whether a log line about it carries its traceback (False: its message says it all).
    log_traceback = True


class ConfigError(ArchiverError):
    """A setting or the settings file is invalid."""

    exit_code = 2


class SourceError(ArchiverError):
    """A source cannot be recognised or read."""

    exit_code = 3


class NotInitialisedError(ArchiverError):
    """The data folder or database has not been created with ``archiver init``."""

    exit_code = 4


class StorageError(ArchiverError):
    """A WARC file or record cannot be read or written."""

    exit_code = 5


class WriteError(StorageError):
    """A WARC file cannot be written (a full disk, a quota, an I/O error); the record was not
    stored."""

    log_traceback = False


class MissingFileError(StorageError):
    """The WARC file asked for is in neither the local folder nor the object storage."""
