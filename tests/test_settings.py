import re
from pathlib import Path

import pytest

from archiver.errors import ConfigError
from archiver.settings import REGISTRY, env_var_name, example_config, load_settings, parse_duration

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
    ("[fetch]\nconcurrency = 0\n", "greater than zero"),
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
