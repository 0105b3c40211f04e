"""What a scheduler or worker keeps for its whole life stays bounded: cookies, robots.txt rules,
soft-404 probes and per-host politeness state are forgotten, not piled up, as sites go by."""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from archiver.bounded import RecentDict
from archiver.check import Probe, ProbeCache
from archiver.demo.fixtureweb import Site
from archiver.net.client import HttpClient
from archiver.net.cookies import MAX_PER_SITE, SiteCookies, site_group
from archiver.net.politeness import PRUNE_EVERY, HostLimiter
from archiver.robots import RobotsPolicy
from tests.conftest import make_settings


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _set(cookies: SiteCookies, url: str, cookie: str) -> None:
    cookies.keep(url, [("Set-Cookie", cookie)])


def _sent(cookies: SiteCookies, url: str) -> str | None:
    return cookies.add_to(url, {}).get("Cookie")


def test_recent_dict_keeps_the_newest_keys() -> None:
    recent: RecentDict[str, int] = RecentDict(2)
    recent["a"], recent["b"] = 1, 2
    recent["a"] = 1  # stored again: "a" is now the newest
    assert list(recent) == ["b", "a"]
    recent["c"] = 3
    assert list(recent) == ["a", "c"]
    with pytest.raises(ValueError):
        RecentDict(0)


def test_a_sites_cookies_are_forgotten_an_hour_after_its_last_request() -> None:
    clock = Clock()
    cookies = SiteCookies(lifetime=3600, clock=clock)
    _set(cookies, "https://news.example.org/login", "session=s1; Path=/")
    clock.now += 3000
    assert _sent(cookies, "https://news.example.org/a") == "session=s1"  # used: kept longer
    clock.now += 3000
    assert _sent(cookies, "https://news.example.org/b") == "session=s1"
    clock.now += 3601
    assert _sent(cookies, "https://news.example.org/c") is None
    assert len(cookies) == 0


def test_cookie_memory_holds_the_most_recently_used_sites_only() -> None:
    cookies = SiteCookies(max_sites=3)
    for n in range(3):
        _set(cookies, f"https://site{n}.example/", f"n={n}")
    assert _sent(cookies, "https://site0.example/") == "n=0"  # site0 is the newest now
    _set(cookies, "https://site3.example/", "n=3")
    assert len(cookies) == 3
    assert _sent(cookies, "https://site1.example/") is None  # the least recently used went
    assert [_sent(cookies, f"https://site{n}.example/") for n in (0, 2, 3)] == [
        "n=0", "n=2", "n=3"]


def test_cookies_for_a_parent_domain_reach_its_other_hosts_and_no_one_else() -> None:
    cookies = SiteCookies()
    _set(cookies, "https://login.example.org/", "sso=1; Domain=example.org; Path=/")
    assert _sent(cookies, "https://www.example.org/page") == "sso=1"
    assert _sent(cookies, "https://example.net/") is None
    assert _sent(cookies, "https://evil-example.org/") is None
    assert site_group("www.EXAMPLE.org.") == site_group("login.example.org") == "example.org"
    assert site_group("[::1]") == "::1" and site_group("127.0.0.1") == "127.0.0.1"


def test_a_site_setting_endless_cookies_does_not_grow_its_jar_without_bound() -> None:
    cookies = SiteCookies()
    for n in range(MAX_PER_SITE + 50):
        _set(cookies, "https://tracker.example/", f"c{n}=1")
    sent = _sent(cookies, "https://tracker.example/") or ""
    assert sent.count("=") <= MAX_PER_SITE


def test_a_sites_cookie_survives_other_sites_under_the_same_public_suffix() -> None:
    """Hosts are grouped by their last two labels, so every blog on a shared host
    (x.substack.com, x.github.io) or under a two-label suffix (x.co.uk) shares one jar: past
    MAX_PER_SITE cookies the sites that set the most lose theirs, not the site that set one
    (a consent wall setting a cookie on one redirect hop and wanting it on the next)."""
    cookies = SiteCookies()
    per_blog = 4
    for n in range(MAX_PER_SITE // per_blog):  # 50 other blogs, 4 cookies each, within the hour
        for k in range(per_blog):
            _set(cookies, f"https://blog{n}.substack.com/", f"c{k}=v; Path=/")
    assert site_group("mine.substack.com") == site_group("blog0.substack.com")
    _set(cookies, "https://mine.substack.com/consent", "consent=yes; Path=/")
    assert _sent(cookies, "https://mine.substack.com/next") == "consent=yes"


def test_emptying_a_full_jar_does_not_break_a_concurrent_request_of_its_site() -> None:
    """CookieJar counts and empties itself without its lock: trimming a full jar while another
    thread built a Cookie header from it raised KeyError out of HttpClient.fetch (seen with a
    loopback site setting many cookies and a page's requisites fetched in parallel)."""
    cookies = SiteCookies()
    errors: list[BaseException] = []
    until = time.monotonic() + 4

    def work(seed: int) -> None:
        rng = random.Random(seed)
        while not errors and time.monotonic() < until:
            url = f"https://s{rng.randrange(300)}.example.com/p{rng.randrange(50)}/x"
            try:
                _set(cookies, url, f"k{rng.randrange(4)}=v")
                _sent(cookies, url)
            except Exception as exc:  # anything raised here is the defect
                errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads change often: the race shows within a second
    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors, repr(errors[0])


def test_the_client_sends_a_site_only_its_own_cookies(tmp_path: Path, site: Site) -> None:
    def set_cookie(_request: Request) -> Response:
        response = Response("set")
        response.set_cookie("mine", "1", path="/")
        return response

    seen: list[str | None] = []
    site.route("/set", set_cookie)
    site.route("/echo", lambda request: (seen.append(request.headers.get("Cookie")),
                                         Response("ok"))[1])
    client = HttpClient(make_settings(tmp_path))
    with Site(host="127.0.0.2") as other:
        other.route("/echo", lambda request: (seen.append(request.headers.get("Cookie")),
                                              Response("ok"))[1])
        client.fetch(site.url("/set"))
        client.fetch(site.url("/echo"))
        client.fetch(other.url("/echo"))
    assert seen == ["mine=1", None]
    assert len(client.cookies) == 1


def test_robots_rules_are_kept_for_the_latest_origins_only(tmp_path: Path) -> None:
    client = HttpClient(make_settings(tmp_path))
    robots = RobotsPolicy(client, max_origins=2)
    with Site(host="127.0.0.1") as a, Site(host="127.0.0.2") as b, Site(host="127.0.0.3") as c:
        for one in (a, b, c):
            one.page("/robots.txt", "User-agent: *\nDisallow: /private\n",
                     headers={"Content-Type": "text/plain"})
            assert robots.allowed(one.url("/page"))
            assert not robots.allowed(one.url("/private/x"))
        assert robots.allowed(a.url("/again"))  # a's rules were dropped: read again
        assert (a.hits["/robots.txt"], b.hits["/robots.txt"], c.hits["/robots.txt"]) == (2, 1, 1)


def test_probe_answers_are_kept_for_the_latest_sites_only(tmp_path: Path) -> None:
    known = [(f"old{n}.example/", 10.0 * n, Probe(f"http://old{n}.example/zz", 404, None, None))
             for n in range(5)]
    cache = ProbeCache(3600, known, max_entries=3)
    client = HttpClient(make_settings(tmp_path))
    with Site(host="127.0.0.1") as site:
        site.page("/dir/page", "page")
        assert cache.probe(client, site.url("/dir/page")) is not None
    held = list(cache._entries)
    assert len(held) == 3  # the newest: this probe and the two youngest stored answers
    assert held[:2] == ["old1.example/", "old0.example/"]


def test_politeness_state_of_hosts_gone_by_is_dropped() -> None:
    limiter = HostLimiter(2, 0.0)
    hosts = [f"host{n}.example" for n in range(PRUNE_EVERY * 2)]
    for host in hosts:
        with limiter.slot(host):
            pass
    assert limiter._slots == {} and not limiter._users
    assert len(limiter._next_start) < PRUNE_EVERY  # past starts are swept as hosts go by


def test_a_host_in_use_keeps_its_limit_while_others_come_and_go() -> None:
    limiter = HostLimiter(1, 0.0)
    inside = threading.Event()
    release = threading.Event()
    entered: list[str] = []

    def hold() -> None:
        with limiter.slot("busy.example"):
            inside.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    for n in range(10):
        with limiter.slot(f"other{n}.example"):
            pass

    def second() -> None:
        with limiter.slot("busy.example"):
            entered.append("second")

    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(0.3)
    assert entered == []  # still one at a time on the busy host
    release.set()
    holder.join(5)
    waiter.join(5)
    assert entered == ["second"] and limiter._slots == {}


def test_requisites_remembered_for_reuse_stay_bounded(
        tmp_path: Path, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Within capture.requisite_reuse every requisite was kept, and above the bound the whole
    memory was copied on each new one: a large first capture grew and slowed without end."""
    from archiver import capture as capture_module
    from archiver.archive import Archive, initialise

    monkeypatch.setattr(capture_module, "RECENT_MEMORY", 3)
    images = "".join(f'<img src="/i{n}.png">' for n in range(6))
    site.page("/page", f"<html><body>{images}</body></html>")
    for n in range(6):
        site.page(f"/i{n}.png", b"\x89PNG" + bytes([n]), headers={"Content-Type": "image/png"})
    settings = make_settings(tmp_path / "data", capture__requisite_reuse="1h")
    initialise(settings)
    archive = Archive.open(settings)
    try:
        capturer = archive.capturer()
        assert capturer.capture(site.url("/page")).requisites == 6
        assert len(capturer._recent) == 3
    finally:
        archive.close()
