"""Verdicts of single checks against a fixture web that reproduces each case."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from archiver.check import check_url
from archiver.demo.fixtureweb import Site
from archiver.net.client import HttpClient
from archiver.settings import Settings
from archiver.verdicts import Verdict
from tests.conftest import make_settings


@pytest.fixture
def checker(tmp_path: Path) -> tuple[HttpClient, Settings]:
    settings = make_settings(tmp_path, health__retries=1, fetch__timeout="1s")
    return HttpClient(settings), settings


@pytest.fixture
def web(site: Site) -> Site:
    site.page("/ok", "<h1>fine</h1>")
    site.page("/missing", "gone", status=404)
    site.page("/removed", "gone for good", status=410)
    site.page("/broken", "oops", status=500)
    site.page("/private", "login", status=401)
    site.page("/botwall", "<title>Just a moment...</title>", status=403)
    site.page("/slowdown", "too many", status=429, headers={"Retry-After": "120"})
    site.redirect("/moved", "/ok", 301)
    site.redirect("/2019/05/article-about-x", "/", 302)
    site.page("/", "home")
    site.redirect("/loop-a", "/loop-b")
    site.redirect("/loop-b", "/loop-a")

    def no_head(request: Request) -> Response:
        if request.method == "HEAD":
            return Response("", status=405)
        return Response("<p>GET works</p>", mimetype="text/html")

    site.route("/no-head", no_head)
    return site


@pytest.mark.parametrize(("path", "verdict", "status"), [
    ("/ok", Verdict.OK, 200),
    ("/missing", Verdict.NOT_FOUND, 404),
    ("/removed", Verdict.GONE, 410),
    ("/broken", Verdict.SERVER_ERROR, 500),
    ("/private", Verdict.BLOCKED, 401),
    ("/botwall", Verdict.BLOCKED, 403),
    ("/slowdown", Verdict.RATE_LIMITED, 429),
    ("/moved", Verdict.REDIRECT, 200),
    ("/2019/05/article-about-x", Verdict.REDIRECT_TO_ROOT, 200),
    ("/no-head", Verdict.OK, 200),
])
def test_verdicts(checker: tuple[HttpClient, Settings], web: Site, path: str, verdict: Verdict,
                  status: int) -> None:
    client, settings = checker
    outcome = check_url(client, web.url(path), settings)
    assert outcome.verdict is verdict
    assert outcome.http_status == status


def test_redirect_keeps_final_url_and_chain(checker: tuple[HttpClient, Settings],
                                            web: Site) -> None:
    client, settings = checker
    outcome = check_url(client, web.url("/moved"), settings)
    assert outcome.final_url == web.url("/ok")
    assert [hop["status"] for hop in outcome.evidence["chain"]] == [301, 200]


def test_rate_limit_evidence_keeps_retry_after(checker: tuple[HttpClient, Settings],
                                               web: Site) -> None:
    client, settings = checker
    outcome = check_url(client, web.url("/slowdown"), settings)
    assert outcome.evidence["headers"]["retry-after"] == "120"


def test_head_refused_falls_back_to_get(checker: tuple[HttpClient, Settings], web: Site) -> None:
    client, settings = checker
    outcome = check_url(client, web.url("/no-head"), settings)
    assert outcome.evidence["method"] == "GET"
    assert web.hits["/no-head"] == 2


def test_redirect_loop(checker: tuple[HttpClient, Settings], web: Site) -> None:
    client, settings = checker
    assert check_url(client, web.url("/loop-a"), settings).verdict is Verdict.REDIRECT_LOOP


def test_transient_errors_are_retried_before_they_count(
        checker: tuple[HttpClient, Settings], site: Site) -> None:
    answers = iter([503, 503, 200, 200])  # HEAD and GET fail, then recover
    site.route("/flaky", lambda _r: Response("x", status=next(answers)))
    client, settings = checker
    outcome = check_url(client, site.url("/flaky"), settings)
    assert outcome.verdict is Verdict.OK
    assert outcome.evidence["attempts"] == 2


def test_server_that_never_answers_is_a_timeout(checker: tuple[HttpClient, Settings]) -> None:
    client, settings = checker
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    try:
        outcome = check_url(client, f"http://127.0.0.1:{listener.getsockname()[1]}/x", settings)
    finally:
        listener.close()
    assert outcome.verdict is Verdict.TIMEOUT
    assert outcome.evidence["attempts"] == 2


def test_closed_port_and_unknown_host(checker: tuple[HttpClient, Settings]) -> None:
    client, settings = checker
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert check_url(client, f"http://127.0.0.1:{port}/", settings).verdict is \
        Verdict.CONNECTION_REFUSED
    assert check_url(client, "http://gone.invalid/", settings).verdict is Verdict.DNS_ERROR


def test_site_root_is_never_redirect_to_root(checker: tuple[HttpClient, Settings],
                                             site: Site) -> None:
    site.redirect("/", "/home/", 301)
    site.page("/home/", "home")
    client, settings = checker
    assert check_url(client, site.url("/"), settings).verdict is Verdict.REDIRECT
