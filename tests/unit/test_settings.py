"""Settings come from ONEDOOR_* variables and a TOML file, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from queue_server.settings import SettingsError, load_settings


def test_defaults_embedded_sqlite_and_no_redis(tmp_path: Path) -> None:
    settings = load_settings({"ONEDOOR_VAR_DIR": str(tmp_path)})
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path}/onedoor.sqlite3"
    assert settings.redis_url is None
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.effective_public_base_url == "http://127.0.0.1:8000"


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings({"ONEDOOR_VAR_DIR": str(tmp_path)})
    first = settings.session_secret()
    assert len(first) == 32
    assert settings.session_secret() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    other = load_settings({"ONEDOOR_VAR_DIR": str(tmp_path / "elsewhere")}).session_secret()
    assert other != first


def test_toml_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "onedoor.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\ndefault_timezone = "Europe/Berlin"\n')
    settings = load_settings({"ONEDOOR_CONFIG": str(config), "ONEDOOR_PORT": "9100"})
    assert settings.port == 9100, "the environment wins over the file"
    assert settings.default_timezone == "Europe/Berlin"
    assert settings.effective_public_base_url == "http://127.0.0.1:9100"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONEDOOR_PORT": "http"}, "ONEDOOR_PORT must be a whole number"),
        ({"ONEDOOR_SECURE_COOKIES": "maybe"}, "ONEDOOR_SECURE_COOKIES must be true or false"),
        ({"ONEDOOR_DEFAULT_TIMEZONE": "Moon/Base"}, "not a known timezone"),
        ({"ONEDOOR_WORKERS": "4"}, "needs a shared database"),
        ({"ONEDOOR_CONFIG": "/nonexistent/onedoor.toml"}, "ONEDOOR_CONFIG=/nonexistent"),
        ({"ONEDOOR_LOOP_STALL_MS": "soon"}, "ONEDOOR_LOOP_STALL_MS must be a number of milli"),
        ({"ONEDOOR_LOOP_STALL_MS": "-5"}, "ONEDOOR_LOOP_STALL_MS must be 0 .off. or more"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_bad_secret_key() -> None:
    with pytest.raises(SettingsError, match="64 hex digits"):
        load_settings({"ONEDOOR_SECRET_KEY": "short"}).session_secret()
