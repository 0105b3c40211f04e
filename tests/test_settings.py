import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from archiver.archive import Archive
from archiver.cli import cli
from archiver.demo.fixtureweb import Site
from archiver.errors import ConfigError
from archiver.models import DailyStateCount
from archiver.settings import (
    MAX_DURATION,
    MAX_WEB_WORKERS,
    REGISTRY,
    Setting,
    env_var_name,
    example_config,
    load_settings,
    parse_duration,
)
from tests.conftest import TEST_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("text", "seconds"), [
    ("0s", 0), ("90m", 5400), ("3d", 259200), ("1.5h", 5400), ("250ms", 0.25), (12, 12),
    ("45", 45), ("2w", 1209600),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["3 days", "-1s", "soon", "", True])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_defaults_that_the_issue_names() -> None:
    settings = load_settings(env={})
    assert settings["health.dead_after_failures"] == 3
    assert settings["health.failure_spacing"] == 3 * 86400
    assert settings["fetch.allow_private_networks"] is False
    assert settings["fetch.per_host_concurrency"] == 2
    assert settings["fetch.per_host_delay"] == 1
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("archiver.sqlite3")


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text('data_dir = "/srv/a"\n[fetch]\ntimeout = "10s"\nconcurrency = 3\n')
    settings = load_settings(config, env={"ARCHIVER_FETCH__TIMEOUT": "5"},
                             overrides={"fetch.concurrency": 4})
    assert settings["data_dir"] == "/srv/a"
    assert settings["fetch.timeout"] == 5
    assert settings["fetch.concurrency"] == 4


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[health]\ndead_after_failures = 5\n")
    settings = load_settings(env={"ARCHIVER_CONFIG": str(config)})
    assert settings["health.dead_after_failures"] == 5


@pytest.mark.parametrize(("content", "message"), [
    ("[fetch]\ntimeout = \"soon\"\n", "fetch.timeout"),
    ("[fetch]\nconcurrency = 0\n", "an integer from 1 to 1000"),
    ("[fetch]\nnot_a_setting = 1\n", "unknown setting"),
    ("this is = = not toml", "not valid TOML"),
])
def test_bad_files_give_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, env={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_bad_environment_value() -> None:
    with pytest.raises(ConfigError, match=r"fetch\.allow_private_networks"):
        load_settings(env={"ARCHIVER_FETCH__ALLOW_PRIVATE_NETWORKS": "perhaps"})


def test_secrets_are_redacted() -> None:
    settings = load_settings(env={"ARCHIVER_SECRET_KEY": "hunter2",
                                  "ARCHIVER_DATABASE_URL": "postgresql://u:pw@db/x"})
    redacted = settings.redacted()
    assert redacted["secret_key"] == "<redacted>"
    assert redacted["database_url"] == "<redacted>"
    assert "hunter2" not in str(redacted)


def test_env_var_names() -> None:
    assert env_var_name("fetch.timeout") == "ARCHIVER_FETCH__TIMEOUT"
    assert env_var_name("data_dir") == "ARCHIVER_DATA_DIR"


def test_example_config_documents_every_setting_and_is_current() -> None:
    """config/archiver.example.toml is generated from the registry (`make config`)."""
    example = (ROOT / "config" / "archiver.example.toml").read_text()
    assert example == example_config()
    for setting in REGISTRY:
        assert setting.help in example
        assert env_var_name(setting.name) in example


def test_example_config_parses_back_to_defaults(tmp_path: Path) -> None:
    setting_line = re.compile(r"^# [a-z_]+ = ")
    uncommented = "\n".join(line[2:] if setting_line.match(line) else line
                            for line in example_config().splitlines())
    path = tmp_path / "all.toml"
    path.write_text(uncommented)
    assert dict(load_settings(path, env={})) == dict(load_settings(env={}))


def test_readme_documents_every_setting() -> None:
    """The README's table is the registry's (`make config` regenerates it)."""
    from archiver.docs import readme_with_settings

    readme = (ROOT / "README.md").read_text()
    assert readme_with_settings(readme) == readme
    assert [s.name for s in REGISTRY if f"`{s.name}`" not in readme] == []


# -- Values that passed validation and then broke the tool: each is refused by every entry
# -- point, with the setting's name and range, exit code 2 and no traceback.

def run_cli(tmp_path: Path, *args: str, toml: str | None = None,
            env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``archiver [--config FILE] ARGS`` in process, as a script runs it."""
    options = []
    if toml is not None:
        config = tmp_path / "archiver.toml"
        config.write_text(toml, encoding="utf-8")
        options = ["--config", str(config)]
    environ = {"ARCHIVER_DATA_DIR": str(tmp_path / "data"), **(env or {})}
    result = CliRunner().invoke(cli, [*options, *args], env=environ, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def assert_refused(code: int, err: str, name: str, accepted: str) -> None:
    """Exit 2, one line naming the setting and what it accepts, no traceback."""
    assert code == 2, err
    assert f"error: {name}: " in err and accepted in err, err
    assert "Traceback" not in err


BAD_FILES = [
    # Concurrency of 1e20 spun forever building a connection pool.
    ("[fetch]\nconcurrency = 1e20", "fetch.concurrency", "an integer from 1 to 1000, got 1e+20"),
    ("[fetch]\nconcurrency = 100000000000000000000", "fetch.concurrency", "from 1 to 1000"),
    ("[fetch]\nconcurrency = 1001", "fetch.concurrency", "from 1 to 1000"),
    ("[fetch]\nper_host_concurrency = 1001", "fetch.per_host_concurrency", "from 1 to 1000"),
    ("[health]\nbatch_size = 10001", "health.batch_size", "from 1 to 10000"),
    ("[health]\nretries = 11", "health.retries", "from 0 to 10"),
    ("[capture]\ncss_depth = 21", "capture.css_depth", "from 0 to 20"),
    # Ints take whole numbers only: inf was an OverflowError, 2.7 became 2.
    ("[health]\nbatch_size = inf", "health.batch_size", "an integer from 1 to 10000, got inf"),
    ("[health]\nbatch_size = nan", "health.batch_size", "an integer from 1 to 10000, got nan"),
    ("[fetch]\nconcurrency = 2.7", "fetch.concurrency", "an integer from 1 to 1000, got 2.7"),
    ("[fetch]\nconcurrency = 4.0", "fetch.concurrency", "an integer from 1 to 1000, got 4.0"),
    ("[fetch]\nconcurrency = true", "fetch.concurrency", "an integer from 1 to 1000"),
    ("[fetch]\nconcurrency = \"8.0\"", "fetch.concurrency", "an integer from 1 to 1000"),
    # Durations and numbers are finite and bounded: inf broke every check.
    ("[fetch]\ntimeout = inf", "fetch.timeout", "a duration from 1ms to 1d"),
    ("[fetch]\ntimeout = nan", "fetch.timeout", "a duration from 1ms to 1d"),
    ("[fetch]\ntimeout = \"2d\"", "fetch.timeout", "a duration from 1ms to 1d"),
    ("[health]\nrecheck_alive = 1e300", "health.recheck_alive", "from 0s to 36500d"),
    ("[health]\nsoft_404_similarity = nan", "health.soft_404_similarity", "a number from 0 to 1"),
    ("[health]\ndrift_threshold = inf", "health.drift_threshold", "a number from 0 to 1"),
    ("[fetch]\nmax_body_bytes = \"5GiB\"", "fetch.max_body_bytes", "a size from 1B to 4GiB"),
    ("[warc]\nmax_file_bytes = 1e30", "warc.max_file_bytes", "a size from 1B to 100GiB"),
    # The WARC prefix is a plain file-name prefix: '../escaped' wrote outside the folder.
    ("[warc]\nprefix = \"../escaped\"", "warc.prefix", "letters, digits"),
    ("[warc]\nprefix = \"sub/dir\"", "warc.prefix", "letters, digits"),
    ("[warc]\nprefix = \"\"", "warc.prefix", "letters, digits"),
    ("[warc]\nprefix = \".hidden\"", "warc.prefix", "not starting with '.'"),
    ("[warc]\nprefix = \"a b\"", "warc.prefix", "letters, digits"),
    ("[warc]\nprefix = \"archive\\n\"", "warc.prefix", "letters, digits"),
    (f"[warc]\nprefix = \"{'a' * 65}\"", "warc.prefix", "1 to 64 letters"),
    ("[fetch]\nuser_agent = \"bot\\r\\nX-Injected: 1\"", "fetch.user_agent",
     "control characters"),
    # Ports.
    ("[web]\nport = 70000", "web.port", "an integer from 1 to 65535, got 70000"),
    ("[web]\nport = 0", "web.port", "an integer from 1 to 65535"),
    ("[web]\nport = -5", "web.port", "an integer from 1 to 65535"),
    ("[web]\nworkers = 0", "web.workers", f"an integer from 1 to {MAX_WEB_WORKERS}"),
    ("[notify]\nsmtp_port = 65536", "notify.smtp_port", "an integer from 1 to 65535"),
    # A webhook URL without a scheme was taken, and every notice then failed.
    ("[notify]\nwebhook_url = \"notaurl\"", "notify.webhook_url", "an http(s) URL"),
    ("[notify]\nwebhook_url = \"hooks.example.org/dead\"", "notify.webhook_url",
     "an http(s) URL"),
    ("[notify]\nwebhook_url = \"ftp://hooks.example.org/dead\"", "notify.webhook_url",
     "an http(s) URL"),
    ("[notify]\nwebhook_url = \"https:///dead\"", "notify.webhook_url", "an http(s) URL"),
]


@pytest.mark.parametrize(("toml", "name", "accepted"), BAD_FILES)
def test_bad_values_in_the_config_file_are_refused(tmp_path: Path, toml: str, name: str,
                                                   accepted: str) -> None:
    code, _, err = run_cli(tmp_path, "config", toml=toml)
    assert_refused(code, err, name, accepted)


BAD_ENVIRONMENT = [
    ("ARCHIVER_FETCH__CONCURRENCY", "1e20", "fetch.concurrency", "from 1 to 1000, got 1e20"),
    ("ARCHIVER_FETCH__CONCURRENCY", "1" * 5000, "fetch.concurrency", "from 1 to 1000"),
    ("ARCHIVER_HEALTH__BATCH_SIZE", "inf", "health.batch_size", "from 1 to 10000"),
    ("ARCHIVER_HEALTH__BATCH_SIZE", "2.7", "health.batch_size", "from 1 to 10000"),
    # An OverflowError traceback, and a capture written but never indexed.
    ("ARCHIVER_HEALTH__RECHECK_ALIVE", "99999999d", "health.recheck_alive",
     "a duration from 0s to 36500d"),
    ("ARCHIVER_CAPTURE__RECAPTURE_INTERVAL", "99999999d", "capture.recapture_interval",
     "a duration from 0s to 36500d"),
    ("ARCHIVER_CAPTURE__LEASE", "36501d", "capture.lease", "a duration from 0s to 36500d"),
    ("ARCHIVER_FETCH__TIMEOUT", "0.5ms", "fetch.timeout", "a duration from 1ms to 1d"),
    ("ARCHIVER_WARC__PREFIX", "../escaped", "warc.prefix", "letters, digits"),
    ("ARCHIVER_WEB__PORT", "99999", "web.port", "from 1 to 65535"),
]


@pytest.mark.parametrize(("variable", "value", "name", "accepted"), BAD_ENVIRONMENT)
def test_bad_values_in_the_environment_are_refused(tmp_path: Path, variable: str, value: str,
                                                   name: str, accepted: str) -> None:
    code, _, err = run_cli(tmp_path, "config", env={variable: value})
    assert_refused(code, err, name, accepted)


def test_a_webhook_url_is_refused_without_showing_it_and_a_good_one_taken(
        tmp_path: Path) -> None:
    code, _, err = run_cli(tmp_path, "config", env={
        "ARCHIVER_NOTIFY__WEBHOOK_URL": "hooks.example.org/t0ken-secret"})
    assert_refused(code, err, "notify.webhook_url", "an http(s) URL")
    assert "t0ken-secret" not in err
    for good in ("", "https://hooks.example.org/t0ken", "HTTP://127.0.0.1:8080/hook"):
        code, _, err = run_cli(tmp_path, "config", env={"ARCHIVER_NOTIFY__WEBHOOK_URL": good})
        assert code == 0, err


RANGED = [setting for setting in REGISTRY if setting.low is not None]


def test_every_number_has_a_documented_range() -> None:
    numbers = [s.name for s in REGISTRY if s.type_name in {"int", "float", "duration", "size"}]
    assert [s.name for s in RANGED] == numbers
    for setting in RANGED:
        assert setting.high is not None and setting.low <= setting.high
        assert f"{setting.type_name}, {setting.range_text()};" in example_config()


def toml_literal(setting: Setting, value: float) -> str:
    """``value`` as a user writes it in the config file: durations and sizes as text."""
    shown = setting.show(value)
    return f'"{shown}"' if setting.type_name in {"duration", "size"} else shown


def config_file(values: dict[Setting, str]) -> str:
    """A TOML file setting ``values`` (literals), grouped by section."""
    lines = []
    for section in dict.fromkeys(s.name.split(".")[0] for s in values):
        lines.append(f"[{section}]")
        lines += [f"{s.name.split('.')[1]} = {literal}" for s, literal in values.items()
                  if s.name.split(".")[0] == section]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("end", ["low", "high"])
def test_every_bound_is_accepted(tmp_path: Path, end: str) -> None:
    """Each range's ends are inside it, written as the docs show them."""
    assert all("." in s.name for s in RANGED)  # so every one sits in a section
    bounds = {s: getattr(s, end) for s in RANGED}
    code, out, err = run_cli(tmp_path, "config", toml=config_file(
        {s: toml_literal(s, bound) for s, bound in bounds.items()}))
    assert code == 0, err
    effective = json.loads(out)
    assert {s.name: effective[s.name] for s in RANGED} == {s.name: b for s, b in bounds.items()}


def just_outside(setting: Setting, end: str) -> str:
    """A value one step beyond the range's ``end``, as text (the way the environment has it)."""
    assert setting.low is not None and setting.high is not None
    step = {"int": 1, "size": 1, "duration": 0.0005, "float": 0.01}[setting.type_name]
    value = setting.low - step if end == "low" else setting.high + step
    if setting.type_name == "duration":
        return f"{value}s"
    return str(int(value)) if setting.type_name in {"int", "size"} else str(value)


@pytest.mark.parametrize("end", ["low", "high"])
@pytest.mark.parametrize("setting", RANGED, ids=[s.name for s in RANGED])
def test_one_step_outside_a_range_is_refused(tmp_path: Path, setting: Setting,
                                             end: str) -> None:
    code, _, err = run_cli(tmp_path, "config",
                           env={env_var_name(setting.name): just_outside(setting, end)})
    assert_refused(code, err, setting.name, setting.accepts())


def test_the_largest_intervals_and_limits_work_end_to_end(tmp_path: Path, site: Site) -> None:
    """Capture, check, index and verify with every interval at its maximum (they are added
    to dates), the pools and batches at theirs, and the longest WARC prefix."""
    longest = {s for s in RANGED if s.high == MAX_DURATION}
    limits = {s for s in RANGED if s.name in {
        "fetch.concurrency", "fetch.per_host_concurrency", "health.batch_size",
        "capture.batch_size", "capture.max_requisites", "capture.css_depth",
        "fetch.max_body_bytes", "capture.max_page_bytes", "capture.max_media_bytes",
        "warc.max_file_bytes", "health.dead_after_failures", "fetch.max_redirects"}}
    toml = config_file({s: toml_literal(s, s.high) for s in longest | limits}
                       | {s: '"' + "p" * 64 + '"' for s in REGISTRY if s.name == "warc.prefix"})
    env = {env_var_name(name): str(value).lower() for name, value in TEST_OVERRIDES.items()
           if name != "health.failure_spacing"}
    with Site("refs") as refs:
        refs.page("/article", "<html><body><h1>An article</h1></body></html>")
        site.page("/feed.xml",
                  '<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>'
                  f'<link>{site.url("/")}</link><description>d</description>'
                  f'<item><title>First</title><link>{site.url("/first")}</link><description>'
                  f'<![CDATA[<a href="{refs.url("/article")}">it</a>]]></description>'
                  '</item></channel></rss>', content_type="application/rss+xml")
        assert run_cli(tmp_path, "init", toml=toml, env=env)[0] == 0
        assert run_cli(tmp_path, "add", site.url("/feed.xml"), toml=toml, env=env)[0] == 0
        code, _, err = run_cli(tmp_path, "run", toml=toml, env=env)
        assert code == 0, err
        code, out, err = run_cli(tmp_path, "-q", "report", "--format", "json", toml=toml,
                                 env=env)
        assert code == 0, err
        [row] = json.loads(out)
        assert (row["url"], row["state"], row["captures"]) == (refs.url("/article"), "alive", 1)
    assert [path.name[:65] for path in (tmp_path / "data" / "warcs").glob("*.warc.gz")] == [
        "p" * 64 + "-"]
    code, _, err = run_cli(tmp_path, "verify", toml=toml, env=env)
    assert code == 0, err


# -- The web commands' own options, and a server that cannot listen.

def run_web(tmp_path: Path, *args: str) -> tuple[int, str]:
    """``archiver ARGS`` as a real process (it may serve: stopped after 30 s), exit code and
    stderr; a process group, so forked servers go too."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free_port = probe.getsockname()[1]  # web.port, should a command serve after all
    environ = {**os.environ, "ARCHIVER_DATA_DIR": str(tmp_path / "data"),
               "ARCHIVER_LOG_LEVEL": "WARNING", "ARCHIVER_WEB__PORT": str(free_port)}
    process = subprocess.Popen([sys.executable, "-c", "from archiver.cli import main; main()",
                                *args], env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"archiver {' '.join(args)} served instead of refusing")
    return process.returncode, err


@pytest.mark.parametrize(("args", "option"), [
    (["web", "--port", "99999"], "--port"),  # was an OverflowError traceback
    (["web", "--port", "-5"], "--port"),
    (["web", "--port", "0"], "--port"),
    (["serve", "--port", "65536"], "--port"),
    (["web", "--workers", "0"], "--workers"),  # served anyway
    (["web", "--workers", str(MAX_WEB_WORKERS + 1)], "--workers"),
])
def test_bad_web_options_are_refused(tmp_path: Path, args: list[str], option: str) -> None:
    assert run_cli(tmp_path, "init")[0] == 0
    code, err = run_web(tmp_path, *args)
    assert code == 2, err
    assert f"Invalid value for '{option}'" in err and "is not in the range" in err
    assert "Traceback" not in err


@pytest.fixture
def taken_port() -> Any:
    """A loopback port something else is listening on."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        yield held.getsockname()[1]


@pytest.mark.parametrize("command", [["web"], ["web", "--workers", "2"], ["serve"]])
def test_a_server_that_cannot_listen_fails_clearly(tmp_path: Path, taken_port: int,
                                                   command: list[str]) -> None:
    assert run_cli(tmp_path, "init")[0] == 0
    code, err = run_web(tmp_path, *command, "--host", "not a host", "--port", "8123")
    assert code == 2, err
    assert "error: cannot listen on not a host:8123: " in err and "Traceback" not in err
    code, err = run_web(tmp_path, *command, "--host", "127.0.0.1", "--port", str(taken_port))
    assert code == 2, err
    assert f"error: cannot listen on 127.0.0.1:{taken_port}: Address already in use" in err
    assert "Traceback" not in err
    if command == ["serve"]:  # its scheduler starts only once the port is ours: no round ran
        settings = load_settings(env={"ARCHIVER_DATA_DIR": str(tmp_path / "data")})
        with Archive.open(settings) as archive, archive.db.session() as session:
            assert session.scalar(select(func.count()).select_from(DailyStateCount)) == 0
