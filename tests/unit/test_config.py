"""The settings module: defaults, the environment over `.env`, flags over both, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexum_research.settings import AgentSettings, ToolSettings
from nexum_server.config import ClientSettings, Settings
from nexum_server.errors import ConfigError


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, whose `.env` the test writes."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults(in_tmp: Path) -> None:
    assert ToolSettings.from_env() == ToolSettings(
        search_backend="duckduckgo", searxng_url=None, page_max_chars=8000, fetch_timeout=20.0, allow_private_urls=False
    )
    assert ClientSettings.from_env().url == "http://127.0.0.1:50051"
    server = Settings.from_env()
    assert (server.host, server.port, server.lease_seconds, server.token) == ("127.0.0.1", 50051, 30.0, None)


def test_the_environment_beats_dotenv_and_a_flag_beats_both(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / ".env").write_text("NEXUM_URL=http://127.0.0.1:1111\nNEXUM_PORT=2222\nNEXUM_LEASE_SECONDS=7\n")
    monkeypatch.delenv("NEXUM_URL")
    monkeypatch.delenv("NEXUM_PORT")
    monkeypatch.delenv("NEXUM_LEASE_SECONDS")
    assert ClientSettings.from_env().url == "http://127.0.0.1:1111"
    assert ClientSettings.origin("url") == "NEXUM_URL in .env"
    monkeypatch.setenv("NEXUM_PORT", "3333")
    settings = Settings.from_env(lease_seconds=None)
    assert (settings.port, settings.lease_seconds) == (3333, 7.0)
    assert Settings.origin("port") == "NEXUM_PORT in the environment"
    assert Settings.from_env(port=4444).port == 4444
    assert Settings.origin("port", {"port": 4444}) == "--port"


def test_an_empty_variable_means_the_default_and_hides_dotenv(in_tmp: Path) -> None:
    # The autouse fixture of conftest.py sets every project variable to "", as the test processes get them.
    (in_tmp / ".env").write_text("NEXUM_URL=http://127.0.0.1:1111\n")
    assert ClientSettings.from_env().url == "http://127.0.0.1:50051"
    assert ClientSettings.origin("url") == "default"


@pytest.mark.parametrize(
    ("cls", "key", "value", "expected"),
    [
        (ToolSettings, "NEXUM_PAGE_MAX_CHARS", "abc", "valid integer"),
        (ToolSettings, "NEXUM_PAGE_MAX_CHARS", "0", "greater than 0"),
        (ToolSettings, "NEXUM_FETCH_TIMEOUT", "-1", "greater than 0"),
        (ToolSettings, "NEXUM_FETCH_TIMEOUT", "nan", "finite number"),
        (ToolSettings, "NEXUM_ALLOW_PRIVATE_URLS", "maybe", "valid boolean"),
        (ToolSettings, "NEXUM_SEARCH_BACKEND", "bing", "'duckduckgo' or 'searxng'"),
        (ToolSettings, "NEXUM_SEARXNG_URL", "localhost:8888", "http:// or https:// URL"),
        (ClientSettings, "NEXUM_URL", "127.0.0.1:50051", "http:// or https:// URL"),
        (Settings, "NEXUM_PORT", "70000", "less than or equal to 65535"),
        (Settings, "NEXUM_MAX_ATTEMPTS", "0", "greater than 0"),
        (Settings, "NEXUM_SQLITE_SYNCHRONOUS", "OFF", "'NORMAL' or 'FULL'"),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_what_is_expected(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, cls: type, key: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as raised:
        cls.from_env()
    assert f"{key}={value!r} (in the environment) is not valid" in str(raised.value)
    assert expected in str(raised.value)


def test_a_bad_value_in_dotenv_says_it_came_from_there(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / ".env").write_text("NEXUM_LEASE_SECONDS=soon\n")
    monkeypatch.delenv("NEXUM_LEASE_SECONDS")
    with pytest.raises(ConfigError, match=r"NEXUM_LEASE_SECONDS='soon' \(in \.env\) is not valid"):
        Settings.from_env()


def test_a_bad_flag_is_named_as_the_flag(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"--lease-seconds=-1\.0 is not valid: input should be greater than 0"):
        Settings.from_env(lease_seconds=-1.0)


def test_searxng_without_its_url_is_refused(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_SEARCH_BACKEND", "searxng")
    with pytest.raises(ConfigError, match="NEXUM_SEARCH_BACKEND=searxng needs NEXUM_SEARXNG_URL"):
        ToolSettings.from_env()
    monkeypatch.setenv("NEXUM_SEARXNG_URL", "http://127.0.0.1:8888/")
    settings = ToolSettings.from_env()
    assert settings.searxng_url == "http://127.0.0.1:8888"
    assert settings.describe() == "SearXNG at http://127.0.0.1:8888"


def test_the_agent_reads_session_id_and_keys_without_the_prefix(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / ".env").write_text("SESSION_ID=from-dotenv\nOPENAI_API_KEY=sk-test\n")
    for key in ("SESSION_ID", "OPENAI_API_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("NEXUM_MODEL", "offline")
    settings = AgentSettings.from_env()
    assert (settings.model, settings.session_id, settings.openai_api_key) == ("offline", "from-dotenv", "sk-test")
    assert "sk-test" not in repr(settings)
    settings.export_provider_keys()
    import os

    assert os.environ["OPENAI_API_KEY"] == "sk-test"


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    from nexum_devtools.procs import DOTENV_KEYS

    keys = {
        cls.key(field) for cls in (Settings, ClientSettings, ToolSettings, AgentSettings) for field in cls.model_fields
    }
    assert set(DOTENV_KEYS) == keys


@pytest.mark.parametrize("given", [" 30D ", "30 d", "30D", "0d", "d", "30w"])
def test_a_retention_period_is_refused_unless_written_as_documented(given: str) -> None:
    with pytest.raises(ConfigError, match="retain"):
        Settings.from_env(retain=given)


@pytest.mark.parametrize(("given", "seconds"), [("30d", 30 * 86400), ("12h", 12 * 3600), ("1.5m", 90), ("45s", 45)])
def test_a_retention_period_as_documented_is_kept_as_given(given: str, seconds: float) -> None:
    settings = Settings.from_env(retain=given)
    assert settings.retain == given and settings.retain_seconds == seconds
