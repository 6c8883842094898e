"""The composition root: ``create_app(settings)`` builds everything; nothing connects before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.base import Store
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig

from display.page import STATIC as DISPLAY_STATIC
from display.page import TEMPLATES, BoardPage
from queue_server.api.admin import HallAdminController
from queue_server.api.audit import AuditController
from queue_server.api.auth import StaffCookieConfig, authorization, sessions_with_cookies
from queue_server.api.auth_routes import AuthController
from queue_server.api.bookings import (
    BookingLinkController,
    BookingSettingsController,
    HallBookingController,
    PublicBookingController,
)
from queue_server.api.cases import CasesController
from queue_server.api.clients import LoginThrottle, client_address, security_headers
from queue_server.api.counter import CounterController
from queue_server.api.deps import (
    BookingGate,
    provide_booking_gate,
    provide_bus,
    provide_desk,
    provide_hall_lookup,
    provide_hubs,
    provide_principal,
    provide_settings,
    provide_speech_cache,
)
from queue_server.api.devices import DeviceController
from queue_server.api.errors import EXCEPTION_HANDLERS
from queue_server.api.public import PublicController
from queue_server.api.simulation import SimulationController
from queue_server.api.statistics import StatisticsController
from queue_server.api.tickets import TicketController
from queue_server.api.webhooks import WebhookController
from queue_server.clock import Clock, SystemClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.logs import litestar_formatters
from queue_server.loop_watch import LoopWatch
from queue_server.ops import Metrics
from queue_server.realtime.boards import serve_boards_beside_the_stack
from queue_server.realtime.feeds import FEEDS
from queue_server.realtime.plugin import Realtime
from queue_server.realtime.snapshots import GZIP_MINIMUM, PRECOMPRESSED
from queue_server.scheduler import SchedulerPlugin
from queue_server.service import estimates
from queue_server.service import sessions as sessions_service
from queue_server.service.bus import Bus
from queue_server.settings import Settings
from queue_server.simulation.launcher import SimulationLauncher, environment_for
from queue_server.web import i18n
from queue_server.web.admin import AdminPage
from queue_server.web.booking_pages import BookingPages
from queue_server.web.counter import CounterPage
from queue_server.web.kiosk import KioskPage
from queue_server.web.pages import QrCode

STATIC = Path(__file__).parent / "static"
WEB = Path(__file__).parent / "web"
SWAGGER = "/static/vendor/swagger-ui"
SESSION_HOURS = sessions_service.SESSION_HOURS
LOGIN_THROTTLE_STORE = "login-throttle"


def create_app(settings: Settings, clock: Clock | None = None) -> Litestar:
    """The OneDoor ASGI app for ``settings``; ``clock`` defaults to the real one."""
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings.effective_database_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.bus = Bus(session_factory(engine), clock)
        watch = LoopWatch(settings.loop_stall_ms / 1000) if settings.loop_stall_ms > 0 else None
        app.state.loop_watch = watch
        if watch is not None:
            watch.start()
        try:
            yield
        finally:
            try:
                await app.state.simulations.close()
                await estimates.stop()
                await engine.dispose()
            finally:
                if watch is not None:
                    watch.stop()  # its collection hook too, whatever failed above

    sessions = StaffCookieConfig(
        secret=settings.session_secret(),
        key="onedoor_session",
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )
    openapi = OpenAPIConfig(
        title="OneDoor",
        version="0.1.0",
        description="One fair queue for a public-service hall: walk-ins and bookings, "
        "counters, boards and printers. Staff sign in at /api/auth/login; devices send "
        "'Authorization: Bearer <token>'.",
        path="/schema",
        use_handler_docstrings=True,
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=f"{SWAGGER}/swagger-ui-bundle.js",
                css_url=f"{SWAGGER}/swagger-ui.css",
                standalone_preset_js_url=f"{SWAGGER}/swagger-ui-standalone-preset.js",
                favicon="",
            )
        ],
    )
    realtime = Realtime(settings)
    metrics = Metrics()
    json_formatters = litestar_formatters(settings.log_format)
    logging_config = (
        LoggingConfig(
            root={"level": "INFO", "handlers": ["queue_listener"]},
            log_exceptions="debug",
            formatters=json_formatters,
        )
        if json_formatters
        else LoggingConfig(
            root={"level": "INFO", "handlers": ["queue_listener"]}, log_exceptions="debug"
        )
    )
    catalogs = i18n.Catalogs.load()
    booking_limit = []
    stores: dict[str, Store] = {}
    if settings.booking_rate_limit:
        limit = RateLimitConfig(rate_limit=("minute", settings.booking_rate_limit))
        booking_limit.append(limit.middleware)
        if settings.redis_url:
            # Several processes count one address together.
            stores[limit.store] = RedisStore.with_client(
                url=settings.redis_url, namespace="onedoor-rate-limit"
            )
    if settings.redis_url:
        # Failed sign-ins are counted together by every process.
        stores[LOGIN_THROTTLE_STORE] = RedisStore.with_client(
            url=settings.redis_url, namespace="onedoor-login-throttle"
        )
    public_booking = Router(
        path="/", route_handlers=[PublicBookingController], middleware=booking_limit
    )
    app = Litestar(
        route_handlers=[
            *FEEDS,
            AuthController,
            AuditController,
            DeviceController,
            HallAdminController,
            TicketController,
            CounterController,
            CasesController,
            StatisticsController,
            WebhookController,
            PublicController,
            public_booking,
            BookingLinkController,
            HallBookingController,
            BookingSettingsController,
            SimulationController,
            BoardPage,
            KioskPage,
            CounterPage,
            BookingPages,
            AdminPage,
            QrCode,
            create_static_files_router(
                path="/static/web",
                directories=[WEB / "static"],
                opt={"public": True},
                include_in_schema=False,
                name="web-static",
            ),
            create_static_files_router(
                path="/static/display",
                directories=[DISPLAY_STATIC],
                opt={"public": True},
                include_in_schema=False,
                name="display-static",
            ),
            create_static_files_router(
                path="/static", directories=[STATIC], opt={"public": True}, include_in_schema=False
            ),
        ],
        dependencies={
            "bus": Provide(provide_bus, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "booking_gate": Provide(provide_booking_gate, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
            "desk": Provide(provide_desk, sync_to_thread=False),
            "hubs": Provide(provide_hubs, sync_to_thread=False),
            "halls": Provide(provide_hall_lookup, sync_to_thread=False),
            "speech_cache": Provide(provide_speech_cache, sync_to_thread=False),
        },
        template_config=TemplateConfig(
            directory=[WEB / "templates", TEMPLATES],
            engine=JinjaTemplateEngine,
            engine_callback=lambda engine: i18n.install(engine.engine, catalogs),
        ),
        plugins=[realtime.channels, realtime, SchedulerPlugin(settings)],
        middleware=[
            metrics.middleware,
            client_address(settings.trusted_networks),
            security_headers(settings.secure_cookies),
            sessions_with_cookies(sessions.middleware),
            authorization,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi,
        compression_config=CompressionConfig(
            backend="gzip", minimum_size=GZIP_MINIMUM, exclude_opt_key=PRECOMPRESSED
        ),
        logging_config=logging_config,
        lifespan=[lifespan],
        stores=stores,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.login_throttle = LoginThrottle(app.stores.get(LOGIN_THROTTLE_STORE))
    app.state.booking_gate = BookingGate(settings.booking_concurrency)
    app.state.clock = clock
    app.state.simulations = SimulationLauncher(environment_for(settings), clock)
    serve_boards_beside_the_stack(app)
    return app
