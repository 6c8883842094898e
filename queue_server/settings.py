"""Typed settings, read from ``ONEDOOR_*`` environment variables and an optional TOML file.

Precedence: environment variable, then the TOML file named by ``ONEDOOR_CONFIG``, then the
default documented under each field.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "ONEDOOR_"


class SettingsError(ValueError):
    """A setting has a value OneDoor cannot use; the message names it and says what to do."""


@dataclass(frozen=True)
class Settings:
    var_dir: Path = Path("var")
    """Folder for the SQLite file, the generated secret key and printed tickets
    (ONEDOOR_VAR_DIR)."""
    database_url: str = ""
    """SQLAlchemy async URL (ONEDOOR_DATABASE_URL). Default: a SQLite file
    ``<var_dir>/onedoor.sqlite3``. Production: ``postgresql+asyncpg://user:pass@host/db``."""
    redis_url: str | None = None
    """Redis URL for fan-out between processes (ONEDOOR_REDIS_URL). Default none: in-memory."""
    host: str = "127.0.0.1"
    """Address to listen on (ONEDOOR_HOST)."""
    port: int = 8000
    """Port to listen on (ONEDOOR_PORT)."""
    workers: int = 1
    """Server processes for ``onedoor serve`` (ONEDOOR_WORKERS); more than one needs
    PostgreSQL."""
    public_base_url: str = ""
    """Base URL visitors' phones reach the server at, used in follow links and QR codes
    (ONEDOOR_PUBLIC_BASE_URL). Default ``http://<host>:<port>``."""
    secret_key: str = ""
    """Key for signing session cookies (ONEDOOR_SECRET_KEY, 64 hex digits). Default: generated
    once and kept in ``<var_dir>/secret_key`` (mode 0600), so sessions survive restarts."""
    default_timezone: str = "Asia/Shanghai"
    """Timezone given to a new hall when none is named (ONEDOOR_DEFAULT_TIMEZONE)."""
    secure_cookies: bool = False
    """Mark the session cookie Secure (ONEDOOR_SECURE_COOKIES); turn on behind HTTPS."""
    log_format: str = "text"
    """``text`` for people, ``json`` (one object per line) for log collectors
    (ONEDOOR_LOG_FORMAT)."""
    metrics_token: str = ""
    """When set, ``GET /metrics`` needs ``Authorization: Bearer <it>``
    (ONEDOOR_METRICS_TOKEN); empty: the metrics are open to whoever reaches the server."""
    trusted_proxies: str = ""
    """Reverse proxies whose ``X-Forwarded-For`` names the client (ONEDOOR_TRUSTED_PROXIES):
    addresses or networks separated by commas, e.g. ``10.0.0.5,192.168.1.0/24``. Empty: the
    header is ignored and the client is the connection's peer."""
    db_pool_size: int = 10
    """PostgreSQL connections per process (ONEDOOR_DB_POOL_SIZE)."""
    print_wait_seconds: float = 3.0
    """How long a reprint request waits to hear whether the ticket printed
    (ONEDOOR_PRINT_WAIT_SECONDS). A kiosk's new ticket never waits: its answer says how
    the job stands and the outcome follows on the kiosk's feed."""
    screen_silent_seconds: float = 120.0
    """A kiosk or board that has shown up once and then sent no heartbeat (every 30 s) for
    this long is reported to staff as offline (ONEDOOR_SCREEN_SILENT_SECONDS)."""
    scheduler: bool = True
    """Run the scheduled jobs (booking release, no-show sweep, reminders, day close) in
    this deployment (ONEDOOR_SCHEDULER). With several processes exactly one leads."""
    leader_poll_seconds: float = 5.0
    """How often a process checks it still leads, or tries to take over from a leader that
    died (ONEDOOR_LEADER_POLL_SECONDS)."""
    sweep_seconds: float = 60.0
    """How often no-shows are swept and reminders sent (ONEDOOR_SWEEP_SECONDS)."""
    notify: str = "log"
    """How reminders reach visitors (ONEDOOR_NOTIFY): ``log``, or ``webhook`` (POST JSON to
    ONEDOOR_NOTIFY_WEBHOOK_URL). An SMS gateway is a subclass of
    ``booking.notify.SmsNotifier``."""
    notify_webhook_url: str = ""
    """Where the webhook notifier posts reminders (ONEDOOR_NOTIFY_WEBHOOK_URL)."""
    booking_concurrency: int = 6
    """Bookings and reschedules one process runs at once (ONEDOOR_BOOKING_CONCURRENCY; 0: no
    limit). More wait their turn in the process, up to 20 s (then 503, try again): every
    booking of a hall queues on the hall's row at commit, and a crowd of connections
    waiting there costs more than it gives."""
    booking_rate_limit: int = 30
    """Requests per minute one client address may make to the public booking endpoints
    (ONEDOOR_BOOKING_RATE_LIMIT); 0 turns the limit off."""
    loop_stall_ms: float = 0.0
    """Log a warning, with where it was, whenever a process's event loop is held this many
    milliseconds or more (ONEDOOR_LOOP_STALL_MS; 0: off). Every request of the process waits
    through such a stall; 50 finds what freezes screens and kiosks without noise."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Unrecognised TOML tables, kept for later features."""

    @property
    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``trusted_proxies`` parsed (ValueError names a bad one)."""
        return tuple(
            ip_network(part.strip(), strict=False)
            for part in self.trusted_proxies.split(",")
            if part.strip()
        )

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'onedoor.sqlite3'}"

    @property
    def effective_public_base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return (self.public_base_url or f"http://{host}:{self.port}").rstrip("/")

    def session_secret(self) -> bytes:
        """The 32-byte session key: the configured one, or the one kept under ``var_dir``."""
        if self.secret_key:
            return _parse_key(self.secret_key, "ONEDOOR_SECRET_KEY")
        path = self.var_dir / "secret_key"
        if not path.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            # Written whole under a temporary name, then linked into place: of several
            # processes starting at once one wins and all read the same complete key.
            fd, tmp = tempfile.mkstemp(dir=self.var_dir, prefix=".secret_key-")
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
        return _parse_key(path.read_text().strip(), str(path))


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SettingsError(
            f"{where} must be 64 hex digits; generate one with: "
            'python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return key


def _coerce(name: str, raw: Any, default: Any) -> Any:
    env = ENV_PREFIX + name.upper()
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{env} must be true or false, got {raw!r}")
    if isinstance(default, float):
        try:
            return float(raw)
        except (TypeError, ValueError):
            unit = "milliseconds" if name.endswith("_ms") else "seconds"
            raise SettingsError(f"{env} must be a number of {unit}, got {raw!r}") from None
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{env} must be a whole number, got {raw!r}") from None
    if isinstance(default, Path):
        return Path(str(raw))
    return None if raw in ("", None) and default is None else str(raw)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (and ``ONEDOOR_CONFIG`` TOML), then ``overrides``.

    Raises SettingsError naming the variable and what it must be.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    config_file = env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"ONEDOOR_CONFIG={config_file}: {exc}") from None
        known = {f.name for f in fields(Settings)}
        for key, value in data.items():
            (values if key in known else extra)[key] = value
    defaults = Settings()
    for f in fields(Settings):
        if f.name == "extra":
            continue
        if (ENV_PREFIX + f.name.upper()) in env:
            values[f.name] = env[ENV_PREFIX + f.name.upper()]
        if f.name in values:
            values[f.name] = _coerce(f.name, values[f.name], getattr(defaults, f.name))
    values.update(overrides)
    settings = Settings(**values, extra=extra)
    try:
        ZoneInfo(settings.default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"ONEDOOR_DEFAULT_TIMEZONE={settings.default_timezone!r} is not a known timezone; "
            "use an IANA name such as Asia/Shanghai"
        ) from None
    if settings.log_format not in ("text", "json"):
        raise SettingsError(f"ONEDOOR_LOG_FORMAT={settings.log_format!r}: use text or json")
    if settings.notify not in ("log", "webhook"):
        raise SettingsError(f"ONEDOOR_NOTIFY={settings.notify!r}: use log or webhook")
    if settings.notify == "webhook" and not settings.notify_webhook_url:
        raise SettingsError("ONEDOOR_NOTIFY=webhook needs ONEDOOR_NOTIFY_WEBHOOK_URL")
    if settings.screen_silent_seconds <= 0:
        raise SettingsError("ONEDOOR_SCREEN_SILENT_SECONDS must be more than 0")
    if settings.booking_concurrency < 0:
        raise SettingsError("ONEDOOR_BOOKING_CONCURRENCY must be 0 (no limit) or more")
    if settings.booking_rate_limit < 0:
        raise SettingsError("ONEDOOR_BOOKING_RATE_LIMIT must be 0 (off) or more")
    if settings.loop_stall_ms < 0:
        raise SettingsError("ONEDOOR_LOOP_STALL_MS must be 0 (off) or more milliseconds")
    try:
        settings.trusted_networks  # noqa: B018 (checked here, used by the app)
    except ValueError as exc:
        raise SettingsError(
            f"ONEDOOR_TRUSTED_PROXIES={settings.trusted_proxies!r}: {exc}; give addresses or "
            "networks separated by commas, e.g. 10.0.0.5,192.168.1.0/24"
        ) from None
    if settings.workers > 1 and settings.effective_database_url.startswith("sqlite"):
        raise SettingsError(
            "ONEDOOR_WORKERS > 1 needs a shared database: set ONEDOOR_DATABASE_URL to PostgreSQL"
        )
    return settings
