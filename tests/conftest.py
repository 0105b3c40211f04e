"""Shared fixtures: settings over a temporary data folder, an initialised archive, loopback
web sites on port 0 and the Flask test client. Nothing here talks to anything but loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from archiver.archive import Archive, initialise
from archiver.demo.fixtureweb import Site
from archiver.settings import Settings, load_settings

TEST_OVERRIDES = {
    "fetch.allow_private_networks": True,  # the fixture web lives on loopback
    "fetch.per_host_delay": "0s",
    "fetch.timeout": "5s",
    "health.retry_backoff": "0s",
    "health.failure_spacing": "0s",
}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for tests: no environment, a temporary data folder, loopback allowed."""
    values: dict[str, object] = {"data_dir": str(data_dir), **TEST_OVERRIDES}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return load_settings(env={}, overrides=values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def archive(settings: Settings) -> Iterator[Archive]:
    initialise(settings)
    with Archive.open(settings) as opened:
        yield opened


@pytest.fixture
def site() -> Iterator[Site]:
    with Site("test") as running:
        yield running


@pytest.fixture
def app(archive: Archive) -> Flask:
    from web import create_app

    flask_app = create_app(archive.settings, archive)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
