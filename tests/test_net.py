"""The outbound HTTP module against real loopback servers: guard, deadline, caps, redirects."""

from __future__ import annotations

import gzip
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from archiver.demo.fixtureweb import Site
from archiver.net.client import ByteBudget, ByteBudgetSpent, FetchError, HttpClient
from archiver.net.guard import forbidden_reason
from archiver.net.politeness import HostLimiter, HostQueue
from archiver.verdicts import Verdict
from tests.conftest import (
    InFlight,
    RawSite,
    assert_a_stop_ends_the_wait,
    make_settings,
    response,
)

# Every spelling must be refused before a single byte is sent (no server needed).
FORBIDDEN_URLS = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://2130706433/",            # decimal
    "http://0x7f.0.0.1/",            # hex
    "http://0177.0.0.1/",            # octal
    "http://127.1/",                 # short form
    "http://0x7f000001/",            # hex, one number
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",    # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",    # mapped metadata address
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",            # CGNAT
    "http://224.0.0.1/",             # multicast
    "http://240.0.0.1/",             # reserved
    "http://[fe80::1]/",             # link-local IPv6
    "http://[fc00::1]/",             # unique local IPv6
]


@pytest.fixture
def guarded(tmp_path: Path) -> HttpClient:
    return HttpClient(make_settings(tmp_path, fetch__allow_private_networks=False))


@pytest.fixture
def client(tmp_path: Path) -> HttpClient:
    return HttpClient(make_settings(tmp_path, fetch__timeout="2s",
                                    fetch__max_body_bytes="1000"))


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_private_destinations_are_refused(guarded: HttpClient, url: str) -> None:
    with pytest.raises(FetchError) as caught:
        guarded.fetch(url)
    assert caught.value.verdict is Verdict.FORBIDDEN_ADDRESS, caught.value.message


def test_guard_refuses_a_real_loopback_server_without_touching_it(
        guarded: HttpClient, site: Site) -> None:
    site.page("/", "secret")
    with pytest.raises(FetchError) as caught:
        guarded.fetch(site.url("/"))
    assert caught.value.verdict is Verdict.FORBIDDEN_ADDRESS
    assert site.hits == {}
    # The author is told what was refused and which setting allows it, not urllib3's internals.
    assert caught.value.message == (
        "loopback address 127.0.0.1 refused (set fetch.allow_private_networks = true, or list "
        "it in fetch.allowed_networks, if you trust it)")


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.215.14", True), ("2606:4700::1111", True), ("8.8.8.8", True),
    ("127.0.0.1", False), ("100.100.100.100", False), ("::ffff:10.1.1.1", False),
    ("2002:7f00:1::", False),  # 6to4 wrapping loopback
])
def test_forbidden_reason(address: str, public: bool) -> None:
    assert (forbidden_reason(address) is None) is public


def test_response_is_kept_as_received(client: HttpClient, site: Site) -> None:
    compressed = gzip.compress(b"<p>hello</p>")
    site.page("/gz", compressed, headers={"Content-Encoding": "gzip"})
    result = client.fetch(site.url("/gz"))
    assert result.final.status == 200
    assert result.final.body == compressed  # Content-Encoding kept, not decoded
    assert result.final.header("content-encoding") == "gzip"
    assert result.final.peer_ip == "127.0.0.1"
    assert result.final.request_head.startswith(b"GET /gz HTTP/1.1\r\nHost: 127.0.0.1:")


def test_chunked_and_plain_bodies_are_the_same_bytes(client: HttpClient, site: Site) -> None:
    site.route("/chunked", lambda _r: Response(iter([b"abc", b"def"]), mimetype="text/plain"))
    site.page("/plain", b"abcdef", content_type="text/plain")
    chunked = client.fetch(site.url("/chunked")).final
    plain = client.fetch(site.url("/plain")).final
    assert chunked.header("transfer-encoding") == "chunked"
    assert chunked.body == plain.body == b"abcdef"


def test_body_cap_truncates_and_marks(client: HttpClient, site: Site) -> None:
    site.page("/big", b"x" * 5000, content_type="text/plain")
    final = client.fetch(site.url("/big")).final
    assert len(final.body) == 1000
    assert final.truncated == "length"


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_parallel_fetches_sharing_a_byte_budget_keep_at_most_it(tmp_path: Path, site: Site,
                                                                  streamed: bool) -> None:
    """Three 300 KB bodies read at once under one 500 KB budget: 500 KB kept in all, each body
    cut short marked "length"; a body declined by want_body takes nothing; once it is spent a
    request is not made."""
    data = bytes(range(256)) * 1200  # 307 200 bytes
    together = threading.Barrier(3, timeout=5)  # every body is sent while the others are

    def big(_request: Request) -> Response:
        together.wait()
        if streamed:  # no Content-Length: chunked
            return Response(iter([data[i:i + 20_000] for i in range(0, len(data), 20_000)]),
                            mimetype="image/png")
        return Response(data, mimetype="image/png")

    for i in range(3):
        site.route(f"/big/{i}", big)
    site.page("/video", b"v" * 100_000, content_type="video/mp4")
    wide = HttpClient(make_settings(tmp_path, fetch__per_host_concurrency=4))
    budget = ByteBudget(500_000)
    declined = wide.fetch(site.url("/video"), byte_budget=budget,
                          want_body=lambda _status, _headers: False).final
    assert declined.body_skipped and budget.remaining == 500_000
    with ThreadPoolExecutor(3) as pool:
        finals = list(pool.map(lambda i: wide.fetch(site.url(f"/big/{i}"),
                                                    byte_budget=budget).final, range(3)))
    assert (finals[0].header("transfer-encoding") == "chunked") is streamed
    assert sum(len(final.body) for final in finals) == 500_000
    assert budget.remaining == 0
    for final in finals:
        assert data.startswith(final.body)
        assert final.truncated == ("length" if len(final.body) < len(data) else None)
    assert sum(final.truncated == "length" for final in finals) >= 2  # read side by side
    with pytest.raises(ByteBudgetSpent):
        wide.fetch(site.url("/big/0"), byte_budget=budget)
    assert site.hits["/big/0"] == 1


def test_deadline_is_for_the_whole_request(client: HttpClient, site: Site) -> None:
    def drip(_request: Request) -> Response:
        def body():  # type: ignore[no-untyped-def]
            for _ in range(20):
                time.sleep(0.25)
                yield b"."
        return Response(body(), mimetype="text/plain")

    site.route("/drip", drip)
    started = time.monotonic()
    final = client.fetch(site.url("/drip")).final
    assert time.monotonic() - started < 3.5  # 2 s deadline, not 20 x 0.25 s of reads
    assert final.truncated == "time"
    assert 0 < len(final.body) < 20


def test_headers_that_never_come_are_a_timeout(client: HttpClient) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        with pytest.raises(FetchError) as caught:
            client.fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/")
        assert caught.value.verdict is Verdict.TIMEOUT
    finally:
        listener.close()


@pytest.fixture
def recorder() -> Iterator[RawSite]:
    """A raw server that answers 200 "ok" and keeps each request head as it arrived."""
    server = RawSite(lambda _method, _path: response(b"200 OK", body=b"ok"))
    yield server
    server.close()


@pytest.mark.parametrize(("host", "path", "request_line", "host_header"), [
    ("127.0.0.1", "/a b/\u00e9t\u00e9?q=x y#part", "GET /a%20b/%C3%A9t%C3%A9?q=x%20y HTTP/1.1",
     "127.0.0.1"),
    ("127.0.0.1", "/100%25/%7e", "GET /100%25/%7E HTTP/1.1", "127.0.0.1"),
    # An internationalised host name: UTS 46 maps full-width digits, then IDNA encodes.
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "/x", "GET /x HTTP/1.1", "127.0.0.1"),
])
def test_the_recorded_request_head_is_what_the_server_received(
        client: HttpClient, recorder: RawSite, host: str, path: str, request_line: str,
        host_header: str) -> None:
    url = f"http://{host}:{recorder.port}{path}"
    final = client.fetch(url).final
    assert final.status == 200 and final.body == b"ok"
    assert final.url == url
    assert recorder.heads == [final.request_head]  # the WARC request record tells the truth
    lines = final.request_head.decode("ascii").split("\r\n")
    assert lines[0] == request_line
    assert lines[1] == f"Host: {host_header}:{recorder.port}"


def test_a_request_body_and_its_length_are_recorded(client: HttpClient,
                                                    recorder: RawSite) -> None:
    final = client.fetch(f"http://127.0.0.1:{recorder.port}/form", "POST", body=b"a=1",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).final
    assert recorder.heads == [final.request_head]
    assert b"\r\nContent-Length: 3\r\n" in final.request_head


def test_credentials_in_the_url_become_basic_auth(client: HttpClient,
                                                 recorder: RawSite) -> None:
    final = client.fetch(f"http://user:p%40ss@127.0.0.1:{recorder.port}/private").final
    assert recorder.heads == [final.request_head]
    assert b"\r\nAuthorization: Basic dXNlcjpwQHNz\r\n" in final.request_head  # user:p@ss
    assert b"Host: 127.0.0.1:" in final.request_head  # and never in the Host header


def test_an_invalid_international_host_name_is_an_invalid_url(client: HttpClient) -> None:
    with pytest.raises(FetchError) as caught:
        client.fetch("http://\u2603-.example/")  # refused before any DNS lookup
    assert caught.value.verdict is Verdict.INVALID_URL


def test_a_cookie_set_on_a_redirect_is_sent_on_the_next_hop(client: HttpClient,
                                                             site: Site) -> None:
    def login(_request: Request) -> Response:
        response = Response(status=302, headers={"Location": "/members"})
        response.set_cookie("session", "s1", path="/")
        return response

    def members(request: Request) -> Response:
        ok = request.cookies.get("session") == "s1"
        return Response("welcome" if ok else "no cookie", status=200 if ok else 403)

    site.route("/login", login)
    site.route("/members", members)
    result = client.fetch(site.url("/login"))
    assert [e.status for e in result.exchanges] == [302, 200]
    assert b"\r\nCookie: session=s1\r\n" in result.final.request_head
    with Site(host="127.0.0.2") as other:  # another host never sees it
        other.route("/members", members)
        assert client.fetch(other.url("/members")).final.status == 403


def test_redirect_chain_is_recorded(client: HttpClient, site: Site) -> None:
    site.redirect("/old", "/middle", 301)
    site.redirect("/middle", "/new", 302)
    site.page("/new", "here")
    result = client.fetch(site.url("/old"))
    assert [e.status for e in result.exchanges] == [301, 302, 200]
    assert result.final.url == site.url("/new")


def test_redirect_loop(client: HttpClient, site: Site) -> None:
    site.redirect("/a", "/b")
    site.redirect("/b", "/a")
    with pytest.raises(FetchError) as caught:
        client.fetch(site.url("/a"))
    assert caught.value.verdict is Verdict.REDIRECT_LOOP
    assert len(caught.value.exchanges) == 2


def test_too_many_redirects(tmp_path: Path, site: Site) -> None:
    limited = HttpClient(make_settings(tmp_path, fetch__max_redirects=3))
    for n in range(10):
        site.redirect(f"/r{n}", f"/r{n + 1}")
    with pytest.raises(FetchError) as caught:
        limited.fetch(site.url("/r0"))
    assert caught.value.verdict is Verdict.TOO_MANY_REDIRECTS


def test_connection_refused(client: HttpClient) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(FetchError) as caught:
        client.fetch(f"http://127.0.0.1:{port}/")
    assert caught.value.verdict is Verdict.CONNECTION_REFUSED


def test_unresolvable_host(client: HttpClient) -> None:
    with pytest.raises(FetchError) as caught:
        client.fetch("http://no-such-host.invalid/")
    assert caught.value.verdict is Verdict.DNS_ERROR


@pytest.mark.parametrize(("url", "verdict"), [
    ("ftp://example.com/file", Verdict.UNSUPPORTED_SCHEME),
    ("http:///nohost", Verdict.INVALID_URL),
])
def test_unfetchable_urls(client: HttpClient, url: str, verdict: Verdict) -> None:
    with pytest.raises(FetchError) as caught:
        client.fetch(url)
    assert caught.value.verdict is verdict


def test_per_host_concurrency_holds(tmp_path: Path, site: Site) -> None:
    answering = InFlight()

    def slow(_request: Request) -> Response:
        with answering.one():
            time.sleep(0.1)
        return Response("ok")

    site.route("/slow", slow)
    polite = HttpClient(make_settings(tmp_path, fetch__per_host_concurrency=2))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: polite.fetch(site.url("/slow")), range(8)))
    assert answering.peak == 2


def test_per_host_delay_spaces_request_starts(tmp_path: Path, site: Site) -> None:
    starts: list[float] = []
    site.route("/", lambda _r: (starts.append(time.monotonic()), Response("ok"))[1])
    polite = HttpClient(make_settings(tmp_path, fetch__per_host_delay="0.2s"))
    for _ in range(3):
        polite.fetch(site.url("/"))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.18 for gap in gaps), gaps


def test_redirects_into_private_networks_are_refused(tmp_path: Path) -> None:
    """127.0.0.2 is trusted as an intranet host; its redirect to 127.0.0.1 is refused."""
    with Site("intranet", host="127.0.0.2") as trusted, Site("other") as private:
        private.page("/secret", "secret")
        trusted.redirect("/go", private.url("/secret"), 302)
        trusted.redirect("/meta", "http://169.254.169.254/latest/meta-data/", 302)
        client = HttpClient(make_settings(tmp_path, fetch__allow_private_networks=False,
                                          fetch__allowed_networks="127.0.0.2/32"))
        for path in ("/go", "/meta"):
            with pytest.raises(FetchError) as caught:
                client.fetch(trusted.url(path))
            assert caught.value.verdict is Verdict.FORBIDDEN_ADDRESS
            assert [e.status for e in caught.value.exchanges] == [302]
        assert private.hits == {}


def test_allowed_networks_setting_is_validated(tmp_path: Path) -> None:
    from archiver.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed_networks"):
        make_settings(tmp_path, fetch__allowed_networks="10.0.0.0/33")


def test_host_queue_hands_out_a_free_host_before_waiting() -> None:
    work = HostQueue([("a", 1), ("a", 2), ("a", 3), ("b", 4)], per_host=2)
    assert work.take() == ("a", 1)
    assert work.take() == ("b", 4)  # hosts take turns
    assert work.take() == ("a", 2)
    # Host a has its two in hand and b has no more work: the next take waits for a slot.
    taken: list[tuple[str, int] | None] = []
    waiter = threading.Thread(target=lambda: taken.append(work.take()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not taken
    work.done("b")  # a slot of a host with no work left frees nothing
    waiter.join(0.2)
    assert waiter.is_alive()
    work.done("a")
    waiter.join(5)
    assert taken == [("a", 3)]
    assert work.take() is None


def test_host_queue_prefers_the_host_just_finished() -> None:
    work = HostQueue([("a", 1), ("b", 2), ("a", 3), ("b", 4)], per_host=1)
    assert [work.take(), work.take()] == [("a", 1), ("b", 2)]
    work.done("b")
    work.done("a")
    assert work.take(prefer="a") == ("a", 3)


def test_host_queue_keeps_the_per_host_limit_and_wakes_everyone_at_the_end() -> None:
    items = [(f"h{n % 3}", n) for n in range(60)]
    work = HostQueue(items, per_host=2)
    lock = threading.Lock()
    in_hand: dict[str, int] = {}
    peak: dict[str, int] = {}
    seen: list[int] = []

    def worker() -> None:
        host: str | None = None
        while (taken := work.take(host)) is not None:
            host, item = taken
            with lock:
                in_hand[host] = in_hand.get(host, 0) + 1
                peak[host] = max(peak.get(host, 0), in_hand[host])
                seen.append(item)
            time.sleep(0.002)
            with lock:
                in_hand[host] -= 1
            work.done(host)

    # More workers than hosts x slots: some wait, and all must return when work runs out.
    workers = [threading.Thread(target=worker) for _ in range(10)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(10)
    assert not any(thread.is_alive() for thread in workers)
    assert sorted(seen) == list(range(60))
    assert peak == {"h0": 2, "h1": 2, "h2": 2}


def test_host_queue_drop_forgets_what_was_not_handed_out() -> None:
    work = HostQueue([("a", 1), ("a", 2), ("a", 3)], per_host=1)
    assert work.take() == ("a", 1)
    waiter = threading.Thread(target=work.take)
    waiter.start()
    assert work.drop() == 2
    waiter.join(5)
    assert not waiter.is_alive()
    assert work.take() is None


@pytest.mark.parametrize(("per_host", "delay"), [(1, 0.0), (2, 30.0)])
def test_a_stop_ends_the_wait_for_a_hosts_slot_or_delay(per_host: int, delay: float) -> None:
    limiter = HostLimiter(per_host, delay, total_concurrency=4)
    assert_a_stop_ends_the_wait(limiter)
    # Every lock the abandoned wait took was given back: no host is left with users.
    assert limiter._slots == {} and limiter._users == {}
    assert limiter._total is not None and limiter._total.acquire(blocking=False)


def test_host_queue_hands_out_nothing_after_a_stop() -> None:
    stop = threading.Event()
    work = HostQueue([("a", 1), ("a", 2), ("b", 3)], per_host=1, stop=stop)
    assert work.take() == ("a", 1)
    assert work.take() == ("b", 3)
    waiter = threading.Thread(target=work.take)  # waits for host a's slot
    waiter.start()
    stop.set()
    work.done("b")  # a finished item after the stop lets the waiting worker go
    waiter.join(5)
    assert not waiter.is_alive()
    work.done("a")
    assert work.take("a") is None
    assert work.drop() == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a", "http://[::1]:9/a",
                                 "http://localhost:9/a", "http://app.localhost:9/a"])
def test_a_refusal_known_without_resolving_waits_for_no_turn(tmp_path: Path, url: str) -> None:
    """Nothing reaches the host, so the per-host delay has nothing to space out: three
    refusals come at once, not a delay apart."""
    guarded = HttpClient(make_settings(tmp_path, fetch__allow_private_networks=False,
                                       fetch__per_host_delay="1s"))
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(FetchError) as caught:
            guarded.fetch(url)
        assert caught.value.verdict is Verdict.FORBIDDEN_ADDRESS
        assert "refused (set fetch.allow_private_networks = true" in caught.value.message
    assert time.monotonic() - started < 0.9


def test_a_trusted_loopback_network_still_reaches_localhost(tmp_path: Path, site: Site) -> None:
    site.page("/", "intranet page")
    trusting = HttpClient(make_settings(tmp_path, fetch__allow_private_networks=False,
                                        fetch__allowed_networks="127.0.0.0/8"))
    assert trusting.fetch(site.url("/").replace("127.0.0.1", "localhost")).final.status == 200
