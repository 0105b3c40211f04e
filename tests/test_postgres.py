"""PostgreSQL through ``database_url`` (psycopg 3): the same migrations and pipeline, claims
that neither block nor overlap, and query plans that use indexes.

A throwaway server runs for the session (tests/pg.py). This module overrides the ``settings``
fixture with a new PostgreSQL database per test, so the shared tests imported below (jobs,
web pages, replay, operations) run here once more, against PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, event, func, select, text

from archiver import actions
from archiver.archive import Archive, initialise
from archiver.capture import index_locations, index_lookup
from archiver.clock import utcnow
from archiver.db import Database
from archiver.demo.fixtureweb import Site
from archiver.history import snapshot_state_counts, state_history
from archiver.jobs import WorkKind, claim_due, load_due
from archiver.metrics import ArchiveCollector
from archiver.models import (
    Capture,
    Check,
    IgnoredDomain,
    Link,
    LinkState,
    Post,
    refresh_ignored,
)
from archiver.notify import pending_query, send_dead_link_notifications
from archiver.replay.lookup import (
    capture_counts,
    captures_of,
    latest_good_captures,
    nearest_capture,
    resolve_key,
)
from archiver.report import latest_evidence, link_rows, links_query
from archiver.settings import Settings
from archiver.urls import host_of, url_key
from archiver.warc.indexer import reindex
from archiver.warc.records import RecordLocation
from tests.conftest import make_settings
from tests.pg import PostgresServer, fresh_pg_url, pg_server, pg_url  # noqa: F401
from tests.test_author import test_the_ignored_flag_follows_the_domains  # noqa: F401
from tests.test_check_history import (  # noqa: F401
    test_runs_of_old_identical_successes_keep_their_first_and_last,
    test_thinning_leaves_a_links_restated_state_unchanged,
)
from tests.test_jobs import (  # noqa: F401
    add_links,
    test_expired_leases_are_taken_over,
    test_jobs_tolerate_a_deleted_link,
    test_links_not_yet_due_are_left_alone,
    test_run_checks_and_captures,
    test_spaced_rechecks_reach_dead,
    test_two_claims_never_share_a_link,
)
from tests.test_memento import (  # noqa: F401
    history,
    test_a_very_long_address_is_not_archived,
    test_frame_banner,
    test_fuzzy_matching_of_tracking_and_cache_busting,
    test_timegate_honours_accept_datetime,
    test_timemaps,
)
from tests.test_migrations import assert_0005_flags_existing_links, assert_migrations_round_trip
from tests.test_ops import test_healthz, test_metrics  # noqa: F401
from tests.test_web import (  # noqa: F401
    filled,
    test_api,
    test_dashboard_counts_states,
    test_link_page_shows_checks_and_captures,
    test_post_page_lists_references_with_states,
    test_posts_and_links_lists,
    test_replay_rewrites_and_sandboxes,
    test_the_links_page_pages_by_id_both_ways,
)


@pytest.fixture(scope="module")
def migrated_template(pg_server: PostgresServer,  # noqa: F811
                      tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database at the newest migration, copied for each test (faster than migrating)."""
    name = pg_server.create_database("migrated")
    database = Database(make_settings(tmp_path_factory.mktemp("template"),
                                      database_url=pg_server.url(name)))
    database.migrate()
    database.dispose()
    return name


@pytest.fixture
def settings(tmp_path: Path, pg_server: PostgresServer,  # noqa: F811
             migrated_template: str) -> Iterator[Settings]:
    """Test settings over a new PostgreSQL database (conftest's are over SQLite)."""
    name = pg_server.create_database(template=migrated_template)
    try:
        yield make_settings(tmp_path / "data", database_url=pg_server.url(name))
    finally:
        pg_server.drop_database(name)


def test_the_shared_tests_here_run_on_postgres(archive: Archive) -> None:
    assert archive.db.engine.dialect.name == "postgresql"
    assert archive.db.engine.dialect.driver == "psycopg"
    assert archive.db.engine.pool.size() >= archive.settings["fetch.concurrency"]  # type: ignore[attr-defined]


def test_migrations_match_models_and_reverse(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    database = Database(make_settings(tmp_path / "data", database_url=pg_url))
    assert_migrations_round_trip(database)
    database.require_current()
    with database.engine.connect() as connection:  # the models leave the operator class out
        pattern_index = connection.scalar(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_captures_url_key_pattern'"))
    assert pattern_index is not None and "text_pattern_ops" in pattern_index
    database.dispose()


def test_0005_flags_existing_links_on_postgres(fresh_pg_url: str,  # noqa: F811
                                               tmp_path: Path) -> None:
    database = Database(make_settings(tmp_path / "data", database_url=fresh_pg_url))
    assert_0005_flags_existing_links(database)
    database.dispose()


def test_plain_postgresql_urls_use_psycopg_3(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    database = Database(make_settings(tmp_path / "data", database_url=plain))
    assert database.engine.dialect.driver == "psycopg"
    with database.session() as session:
        assert session.scalar(text("SELECT 1")) == 1
    database.dispose()


def test_json_and_naive_utc_times_round_trip(archive: Archive) -> None:
    moment = datetime(2024, 2, 29, 23, 59, 58, 123456)
    validators = {"ETag": '"abc"', "Last-Modified": "Thu, 29 Feb 2024 23:59:58 GMT"}
    evidence = {"chain": [{"status": 301, "url": "https://ex.example/a"}], "note": "ünï ✓",
                "headers": {"Content-Type": "text/html"}, "soft404": None, "score": 0.5}
    url = "https://ex.example/a"
    with archive.db.session() as session:
        # The session's time zone must not move naive UTC times.
        session.execute(text("SET LOCAL TIME ZONE 'Pacific/Auckland'"))
        link = Link(url=url, url_key="example,ex)/a", host="ex.example", validators=validators,
                    next_check_at=moment)
        session.add(link)
        session.flush()
        session.add(Check(link_id=link.id, checked_at=moment, verdict="ok", evidence=evidence))
    with archive.db.session() as session:
        stored = session.scalars(select(Link)).one()
        check = session.scalars(select(Check)).one()
        assert stored.validators == validators and check.evidence == evidence
        assert stored.next_check_at == moment and stored.next_check_at.tzinfo is None
        assert check.checked_at == moment and check.checked_at.tzinfo is None
        assert stored.state == LinkState.PENDING and stored.consecutive_failures == 0


def test_reindex_report_notify_and_history(archive: Archive, filled: Site) -> None:  # noqa: F811
    with archive.db.session() as session:
        before = session.scalar(select(func.count(Capture.id)))
    assert before and reindex(archive) == before
    with archive.db.session() as session:
        assert session.scalar(select(func.count(Capture.id))) == before
        rows = {row["url"]: row for row in link_rows(session, list(
            session.scalars(links_query())))}
        page = rows[filled.url("/page")]
        assert page["state"] == "alive" and page["captures"] >= 1 and page["archived_url"]
        assert page["posts"] == ["https://blog.example/first"]
        assert rows[filled.url("/gone")]["evidence"]["http_status"] == 404
        gone = session.scalars(select(Link).where(Link.url == filled.url("/gone"))).one()
        gone.state = LinkState.DEAD
    with archive.db.session() as session:
        assert [link.url for link in session.scalars(pending_query())] == [filled.url("/gone")]
        snapshot_state_counts(session)
        counts = snapshot_state_counts(session)  # twice a day replaces the day's snapshot
        assert counts == {"alive": 1, "dead": 1}
    summary = send_dead_link_notifications(archive)  # no channel configured: nothing marked
    assert (summary.links, summary.marked) == (1, 0)
    with archive.db.session() as session:
        (day, by_state), = state_history(session)
        assert day == utcnow().date() and by_state["dead"] == 1 and by_state["pending"] == 0


def _claim_until_empty(archive: Archive, limit: int, start: threading.Barrier) -> list[int]:
    start.wait()
    claimed: list[int] = []
    while batch := claim_due(archive, WorkKind.CHECK, limit):
        claimed.extend(batch)
    return claimed


def test_concurrent_claims_are_disjoint_and_cover_every_due_link(archive: Archive) -> None:
    ids = add_links(archive, [f"http://host{n % 7}.example/{n}" for n in range(240)])
    start = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        results = [job.result() for job in [pool.submit(_claim_until_empty, archive, 9, start)
                                            for _ in range(4)]]
    claimed = [link_id for result in results for link_id in result]
    assert len(claimed) == len(set(claimed))  # nobody took a link twice
    assert sorted(claimed) == ids
    # Four single claims at the same moment each get a full batch: none waits, none is short.
    with archive.db.session() as session:
        for link in session.scalars(select(Link)):
            link.check_lease_until, link.check_lease_owner = None, None
    start = threading.Barrier(4)

    def once() -> list[int]:
        start.wait()
        return claim_due(archive, WorkKind.CHECK, 60)

    with ThreadPoolExecutor(4) as pool:
        batches = [job.result() for job in [pool.submit(once) for _ in range(4)]]
    assert [len(batch) for batch in batches] == [60] * 4
    assert sorted(i for batch in batches for i in batch) == ids


def test_a_claim_passes_over_locked_links_without_waiting(archive: Archive) -> None:
    ids = add_links(archive, [f"http://example.com/{n}" for n in range(20)])
    pool = ThreadPoolExecutor(1)
    with archive.db.engine.connect() as other:  # another claim, in the middle of its work
        other.execute(select(Link.id).where(Link.id.in_(ids[:10])).with_for_update())
        job = pool.submit(claim_due, archive, WorkKind.CHECK, 10)
        try:
            claimed = job.result(timeout=15)
        finally:
            other.rollback()
            pool.shutdown(wait=True)
    assert claimed == ids[10:]


def _new_link(url: str) -> Link:
    return Link(url=url, url_key=url_key(url), host=host_of(url))


def _is_flagged(archive: Archive, url: str) -> bool:
    with archive.db.session() as session:
        return bool(session.scalar(select(Link.ignored).where(Link.url == url)))


@pytest.mark.parametrize("first", ["link", "domain"])
def test_a_link_inserted_while_its_domain_is_ignored_is_flagged(archive: Archive,
                                                                 first: str) -> None:
    """Whichever transaction begins first, the link ends flagged: the second one waits for
    the first to commit (without the wait, neither sees the other's uncommitted row)."""
    url = "https://news.example.org/story"
    pool = ThreadPoolExecutor(1)
    try:
        with archive.db.session() as session:  # the first transaction, committed at its end
            if first == "link":
                session.add(_new_link(url))
                session.flush()
                other = pool.submit(actions.ignore_domain, archive, "example.org")
            else:
                session.add(IgnoredDomain(domain="example.org"))
                session.flush()

                def add_link() -> None:
                    with archive.db.session() as second:
                        second.add(_new_link(url))

                other = pool.submit(add_link)
            time.sleep(0.5)
            assert not other.done(), "the second transaction did not wait for the first"
        other.result(timeout=15)
    finally:
        pool.shutdown(wait=True)
    assert _is_flagged(archive, url)


# -- query plans ---------------------------------------------------------------------------

BIG_TABLES = {"links", "captures", "checks", "citations", "posts"}
N_POSTS, N_LINKS, N_CAPTURES, N_CHECKS = 5_000, 20_000, 40_000, 20_000
CITES_PER_POST = 8  # each link cited by two posts
HOSTS = 1_000
IGNORED_DOMAINS = ("ignored.example", "site999.example")  # 0.1% of the links: site999's

# Filled in SQL, in bulk: link states, due times and captures spread as a live archive's are
# (most links alive and checked within the week, a few due now, a few broken).
def fill_sql(n_posts: int = N_POSTS, n_links: int = N_LINKS, n_captures: int = N_CAPTURES,
             n_checks: int = N_CHECKS) -> list[str]:
    """The bulk-filling statements, for any size (the scale benchmark uses them too)."""
    return [
        "SET LOCAL session_replication_role = replica",  # rows are consistent: skip the FK checks
        "INSERT INTO sources (id, kind, location, title, added_at) "
        "VALUES (1, 'folder', '/posts', 'Blog', now())",
        f"""INSERT INTO posts (source_id, url, title, published_at, content_hash, discovered_at,
                               updated_at)
            SELECT 1, 'https://blog.example/' || to_char(day, 'YYYY/MM') || '/a-post-on-topic-'
                      || g || '/',
                   'A post on topic ' || g || ', and on what it cites',
                   CASE WHEN g % 50 = 0 THEN NULL ELSE day END,
                   encode(sha256(g::text::bytea), 'hex'), now(), now()
            FROM generate_series(1, {n_posts}) g,
                 LATERAL (SELECT timestamp '2008-01-01' + g * interval '16 hours' AS day) d""",
        f"""INSERT INTO links (url, url_key, host, created_at, state, last_verdict, http_status,
                               consecutive_failures, last_checked_at, next_check_at,
                               next_capture_at, last_capture_at, last_capture_outcome,
                               dead_notified_at, validators, first_fingerprint)
            SELECT 'https://site' || (g % {HOSTS}) || '.example/page/' || g,
                   'example,site' || (g % {HOSTS}) || ')/page/' || g,
                   CASE WHEN g % 10 = 0 THEN 'www.' ELSE '' END || 'site' || (g % {HOSTS})
                       || '.example',
                   timestamp '2020-01-01' + g * interval '1 minute',
                   s.state, CASE s.state WHEN 'alive' THEN 'ok' WHEN 'pending' THEN NULL
                                         ELSE 'not_found' END,
                   CASE s.state WHEN 'alive' THEN 200 WHEN 'pending' THEN NULL ELSE 404 END,
                   CASE WHEN s.state IN ('failing', 'dead') THEN 3 ELSE 0 END,
                   now() - interval '3 days',
                   now() + ((g * 7919) % 10080 - 500) * interval '1 minute',
                   now() + ((g * 104729) % 43200 - 900) * interval '1 minute',
                   now() - interval '20 days', 'archived',
                   CASE WHEN s.state = 'dead' AND g % 3 <> 0 THEN now() END,
                   json_build_object('ETag', '"' || md5(g::text) || '"'),
                   repeat(md5(g::text), 4)
            FROM generate_series(1::bigint, {n_links}) g,
                 LATERAL (SELECT CASE WHEN g % 100 < 85 THEN 'alive'
                                      WHEN g % 100 < 90 THEN 'failing'
                                      WHEN g % 100 < 95 THEN 'dead'
                                      WHEN g % 100 < 97 THEN 'unknown'
                                      ELSE 'pending' END AS state) s""",
        f"""INSERT INTO citations (post_id, link_id, href, element, anchor_text, context)
            SELECT p, ((p - 1) * {CITES_PER_POST} + k) % {n_links} + 1,
                   'https://cited.example/page/' || k, 'a', 'the words of link ' || k,
                   repeat('words around the link ', 8)
            FROM generate_series(1, {n_posts}) p, generate_series(0, {CITES_PER_POST - 1}) k""",
        f"""INSERT INTO captures (url, url_key, captured_at, record_type, status, mime,
                                  payload_digest, warc_file, "offset", length, record_id, truncated)
            SELECT CASE WHEN g % 3 < 2 THEN l.url ELSE l.url || '/style' || g || '.css' END,
                   CASE WHEN g % 3 < 2 THEN l.url_key ELSE l.url_key || '/style' || g || '.css' END,
                   timestamp '2021-01-01' + g * interval '37 minutes',
                   CASE WHEN g % 20 = 0 THEN 'revisit' ELSE 'response' END,
                   CASE WHEN g % 25 = 0 THEN 404 ELSE 200 END, 'text/html',
                   'sha1:' || upper(md5((g % 30000)::text)),
                   'archiver-' || (g / 1000) || '.warc.gz', g * 1000, 900,
                   '<urn:uuid:' || md5(g::text) || '>', NULL
            FROM generate_series(1::bigint, {n_captures}) g
                 JOIN links l ON l.id = g % {n_links} + 1""",
        f"""INSERT INTO checks (link_id, checked_at, verdict, http_status, final_url, elapsed_ms,
                                evidence, response_key)
            SELECT g % {n_links} + 1, now() - ((g * 31) % 43200) * interval '1 minute',
                   CASE WHEN g % 10 = 0 THEN 'not_found' ELSE 'ok' END,
                   CASE WHEN g % 10 = 0 THEN 404 ELSE 200 END, NULL, 100 + g % 900,
                   json_build_object('headers', json_build_object('Server', 'x')), md5(g::text)
            FROM generate_series(1::bigint, {n_checks}) g""",
        """INSERT INTO daily_state_counts (day, state, count)
           SELECT current_date - d, s, 1000 FROM generate_series(0, 120) d,
                  unnest(ARRAY['pending', 'alive', 'failing', 'dead', 'unknown']) s""",
        "INSERT INTO ignored_domains (domain, created_at) VALUES "
        + ", ".join(f"('{domain}', now())" for domain in IGNORED_DOMAINS),
    ]


FILL = fill_sql()


def load(archive: Archive, statements: list[str]) -> None:
    """Run the bulk-filling statements, then flag the links of the ignored domains as
    ignore_domain() does."""
    with archive.db.engine.begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        for statement in statements:
            raw.execute(statement)  # no parameters: psycopg leaves the % signs alone
        for domain in IGNORED_DOMAINS:
            connection.execute(refresh_ignored(domain))


@dataclass
class Recorder:
    """The SQL a piece of code runs (each statement with its parameters), by name."""

    engine: Engine
    current: str | None = None
    statements: list[tuple[str, str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Connection, _cursor: Any, statement: str, parameters: Any,
              _context: Any, executemany: bool) -> None:
        if self.current is not None and not executemany:
            self.statements.append((self.current, statement, parameters))

    @contextmanager
    def named(self, name: str) -> Iterator[None]:
        """Record what runs inside as ``name``."""
        self.current = name
        try:
            yield
        finally:
            self.current = None

    def close(self) -> None:
        """Stop listening."""
        event.remove(self.engine, "before_cursor_execute", self._seen)


def seq_scans(plan: dict[str, Any], parent: str = "") -> list[tuple[str, str]]:
    """(table, parent node type) of each sequential scan in an EXPLAIN (FORMAT JSON) plan."""
    node = plan.get("Node Type", "")
    found = [(plan["Relation Name"], parent)] if node == "Seq Scan" else []
    for child in plan.get("Plans", []):
        found.extend(seq_scans(child, node))
    return found


def fill(archive: Archive) -> None:
    """Bulk rows for the planner (see FILL), then fresh statistics and visibility map."""
    load(archive, FILL)
    with archive.db.engine.connect() as opened:
        connection = opened.execution_options(isolation_level="AUTOCOMMIT")
        # Statistics first, then the visibility map that index-only scans rely on (a VACUUM
        # straight after the load leaves it unset here; autovacuum keeps it in a live one).
        connection.exec_driver_sql("ANALYZE")
        # A transaction still open anywhere in the cluster holds the horizon back and VACUUM
        # cannot mark pages all-visible yet: try again for a while.
        # Every big table: the dashboard counts posts and captures from indexes too.
        for _ in range(40):
            connection.exec_driver_sql("VACUUM")
            visible = connection.exec_driver_sql(
                "SELECT min(relallvisible::float / relpages) FROM pg_class "
                "WHERE relname IN (" + ", ".join(f"'{table}'" for table in BIG_TABLES) + ")")
            if visible.scalar_one() > 0.9:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"VACUUM could not mark the tables {sorted(BIG_TABLES)} all-visible")


def run_the_queries(archive: Archive, client: FlaskClient, record: Recorder) -> None:
    """Call what the scheduler, the dashboard and replay call, recording their SQL."""
    with archive.db.session() as session:
        link = session.scalars(select(Link).where(Link.state == "dead").order_by(Link.id)
                               .offset(100).limit(1)).one()
        post_id = session.scalars(select(Post.id).order_by(Post.id).offset(500).limit(1)).one()
        captured = session.scalars(select(Capture).where(Capture.url_key == link.url_key)
                                   .order_by(Capture.id)).first()
        assert captured is not None
        keys = list(session.scalars(select(Link.url_key).order_by(Link.id).limit(50)))
        link_ids = list(session.scalars(select(Link.id).order_by(Link.id).limit(50)))
    for kind in WorkKind:
        with record.named(f"claim_due({kind})"):
            ids = claim_due(archive, kind, 50)
        assert ids
    with record.named("load_due"):
        load_due(archive, ids)
    with record.named("index_lookup"):
        index_lookup(archive.db.new_session)(captured.payload_digest or "")
    with record.named("index_locations"), archive.db.session() as session:
        index_locations(session, [RecordLocation(
            warc_file=captured.warc_file, offset=captured.offset, length=captured.length,
            record_type="response", record_id="x", url=captured.url,
            captured_at=captured.captured_at, status=200, mime=None, payload_digest=None,
            truncated=None)])
    with record.named("snapshot_state_counts"), archive.db.session() as session:
        snapshot_state_counts(session)
    with record.named("notify pending"), archive.db.session() as session:
        list(session.scalars(pending_query()))
    with record.named("report"), archive.db.session() as session:
        latest_evidence(session, link_ids)
        latest_good_captures(session, keys)
        capture_counts(session, keys)
        state_history(session)
    with record.named("replay lookup"), archive.db.session() as session:
        assert captures_of(session, link.url)
        nearest_capture(session, link.url, datetime(2022, 6, 1))
        assert resolve_key(session, link.url + "?utm_source=feed") == link.url_key
        assert resolve_key(session, "https://never.example/nothing") is None
    pages = ["/", "/posts", "/posts?page=7", f"/posts/{post_id}", "/links",
             "/links?after=1500", "/links?before=1500", "/links?state=dead",
             "/links?state=alive&after=150", "/links?state=dead&before=9000",
             "/links?domain=site7.example", "/links?state=failing&domain=site7.example",
             "/links?domain=site7.example&after=5000", f"/links/{link.id}",
             "/api/links?state=dead", f"/api/links?post={post_id}", "/api/posts",
             f"/web/2022/{link.url}", f"/web/{link.url}", f"/timemap/link/{link.url}",
             "/web/2022/https://never.example/nothing"]
    for page in pages:
        with record.named(f"GET {page}"):
            status = client.get(page).status_code
        assert status in {200, 302, 404}, page
    with record.named("metrics"):
        list(ArchiveCollector(archive).collect())


# Metrics aggregates every row by verdict, record type and capture outcome once per scrape
# (they would each need an index of their own); of the metrics, only the queue depth counts
# are the scheduler's business and held to the rule.
def held_to_the_rule(name: str, statement: str) -> bool:
    """Whether a recorded statement is one the scheduler, the dashboard or replay run."""
    if name == "metrics":
        return "lease_until" in statement
    return statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH"))


# Where the planner may rightly read a whole table:
# - into a hash join, when the join needs a good part of the table at this size: the
#   dashboard's "worst posts" (every broken link's posts: most of the blog's), the posts
#   citing a page of links, the states of a page of posts' links. As tables grow the planner
#   turns to the index path, which must exist: such a statement is planned again with hash
#   and merge joins off, and must then read the big tables through indexes only.
# - the links page's subdomain filter (host LIKE '%.example.org'): no B-tree serves a leading
#   wildcard. It pages in ID order; with a state filter as well, the state index serves it.
SUBDOMAIN_FILTER = "GET /links?domain=site7.example"
HASHED = {"Hash", "Hash Join"}


def explain(connection: Connection, statement: str, parameters: Any) -> dict[str, Any]:
    """The plan PostgreSQL picks for ``statement`` with these parameters (not executed)."""
    rows = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
    plan: dict[str, Any] = rows.scalar_one()[0]["Plan"]
    return plan


def plan_problems(connection: Connection, name: str, statement: str,
                  parameters: Any) -> list[str]:
    """Sequential scans of big tables in the statement's plan that are not expected ones."""
    scans = [(table, parent) for table, parent in seq_scans(explain(connection, statement,
                                                                    parameters))
             if table in BIG_TABLES and not (name == SUBDOMAIN_FILTER and table == "links")]
    problems = [table for table, parent in scans if parent not in HASHED]
    if len(problems) < len(scans):  # hashed whole: is there an index path as well?
        connection.exec_driver_sql("SET enable_hashjoin = off")
        connection.exec_driver_sql("SET enable_mergejoin = off")
        problems += [f"{table} (even without hash joins)" for table, _ in seq_scans(
            explain(connection, statement, parameters)) if table in BIG_TABLES]
        connection.exec_driver_sql("RESET enable_hashjoin")
        connection.exec_driver_sql("RESET enable_mergejoin")
    return problems


def test_scheduler_and_dashboard_queries_use_indexes(archive: Archive,
                                                     client: FlaskClient) -> None:
    fill(archive)
    with archive.db.session() as session:
        due = session.scalar(select(func.count(Link.id)).where(Link.next_check_at <= utcnow()))
        assert due is not None and 0 < due < N_LINKS // 10  # a few due now, as planned
    record = Recorder(archive.db.engine)
    try:
        run_the_queries(archive, client, record)
    finally:
        record.close()
    checked = [(name, statement, parameters) for name, statement, parameters
               in record.statements if held_to_the_rule(name, statement)]
    names = {name for name, _, _ in checked}
    assert {"claim_due(check)", "claim_due(capture)", "GET /", "GET /posts", "metrics",
            SUBDOMAIN_FILTER} <= names
    failures = []
    with archive.db.engine.connect() as connection:
        for name, statement, parameters in checked:
            problems = plan_problems(connection, name, statement, parameters)
            if problems:
                failures.append(f"{name}: Seq Scan on {', '.join(sorted(set(problems)))}\n"
                                f"  {' '.join(statement.split())[:500]}")
        connection.rollback()
    assert len(checked) > 60
    assert not failures, "\n".join(failures)


def test_initialise_twice_is_harmless(settings: Settings) -> None:
    initialise(settings)
    initialise(settings)
    with Archive.open(settings) as opened:
        assert opened.db.is_current()


def test_server_helper_makes_separate_databases(pg_server: PostgresServer) -> None:  # noqa: F811
    first, second = pg_server.create_database("x"), pg_server.create_database("x")
    assert first != second
    pg_server.drop_database(first)
    pg_server.drop_database(second)
