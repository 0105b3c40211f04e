"""Operations: health check, Prometheus metrics, structured logs with run and link."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind, run_due
from archiver.logs import ContextFilter, JsonFormatter
from tests.test_capture import add_link


def test_healthz(client: FlaskClient, archive: Archive) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "storage": "ok"}
    shutil.rmtree(archive.store.directory)
    broken = client.get("/healthz")
    assert broken.status_code == 503
    assert broken.get_json()["storage"].startswith("error")


def test_metrics(client: FlaskClient, archive: Archive, site: Site) -> None:
    site.page("/ok", "<p>x</p>")
    site.page("/gone", "x", status=404)
    add_link(archive, site.url("/ok"))
    add_link(archive, site.url("/gone"))
    response = client.get("/metrics")
    assert response.content_type.startswith("text/plain")
    before = {s.name + json.dumps(s.labels, sort_keys=True): s.value
              for family in text_string_to_metric_families(response.get_data(as_text=True))
              for s in family.samples}
    assert before['archiver_queue_depth{"kind": "capture"}'] == 2
    run_due(archive, WorkKind.CAPTURE)
    with archive.db.session() as session:
        from archiver.models import Link
        for link in session.query(Link):
            link.next_check_at = link.created_at
    run_due(archive, WorkKind.CHECK)
    text = client.get("/metrics").get_data(as_text=True)
    samples = {s.name + json.dumps(s.labels, sort_keys=True): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples['archiver_checks_last_day{"verdict": "ok"}'] == 1
    assert samples['archiver_checks_last_day{"verdict": "not_found"}'] == 1
    assert samples['archiver_links{"state": "failing"}'] == 1
    assert samples['archiver_queue_depth{"kind": "capture"}'] == 0
    assert samples['archiver_records_total{"type": "response"}'] == 2
    assert samples["archiver_warc_bytes{}"] > 0
    assert samples["archiver_fetch_seconds_count{}"] == 2


def test_json_logs_carry_run_and_link(archive: Archive, site: Site,
                                      caplog: pytest.LogCaptureFixture) -> None:
    site.page("/p", "<p>x</p>")
    add_link(archive, site.url("/p"))
    handler = logging.StreamHandler()
    lines: list[str] = []
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("archiver")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run_due(archive, WorkKind.CAPTURE)
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(line) for line in lines]
    captured = [e for e in entries if e["message"].startswith("captured ")]
    assert captured and captured[0]["link_id"] == 1
    assert captured[0]["run"] and len(captured[0]["run"]) == 12
    assert captured[0]["level"] == "INFO" and captured[0]["logger"] == "archiver.jobs"
