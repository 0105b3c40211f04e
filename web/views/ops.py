"""Operations: ``/healthz`` for load balancers and ``/metrics`` for Prometheus."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from archiver.metrics import ArchiveCollector, health
from web.views import archive

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Any:
    """200 when the database and the WARC folder are reachable, 503 otherwise."""
    status = health(archive())
    healthy = all(value == "ok" for value in status.values())
    return jsonify({"status": "ok" if healthy else "error", **status}), 200 if healthy else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of the archive's figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArchiveCollector(archive()))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
