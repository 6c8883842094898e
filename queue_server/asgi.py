"""ASGI entry for process managers: ``uvicorn --factory queue_server.asgi:create_from_env``.

``onedoor serve`` serves this factory too, in each of its workers (``serving.py``). Run one
uvicorn process per port with it: uvicorn's own ``--workers`` share one listening socket,
and keep-alive connections gather on whichever worker wakes first.
"""

from __future__ import annotations

from litestar import Litestar

from queue_server.app import create_app
from queue_server.settings import load_settings


def create_from_env() -> Litestar:
    """The app configured from ``ONEDOOR_*`` variables (each worker process calls this)."""
    return create_app(load_settings())
