"""ASGI entry for process managers: ``uvicorn --factory queue_server.asgi:create_from_env``.

``onedoor serve`` serves this factory too, in each of its workers (``serving.py``). Run one
uvicorn process per port with it: uvicorn's own ``--workers`` share one listening socket,
and keep-alive connections gather on whichever worker wakes first.
"""

from __future__ import annotations

import gc
import sys

from litestar import Litestar

from queue_server.app import create_app
from queue_server.settings import load_settings


def create_from_env() -> Litestar:
    """The app configured from ``ONEDOOR_*`` variables (each worker process calls this)."""
    app = create_app(load_settings())
    settle_garbage_collector()
    sys.setswitchinterval(SWITCH_INTERVAL)
    return app


SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the interpreter while another waits for it (Python's default is
0.005). A serving process plays long queues' projections in a thread
(``estimates._refresh_beside``, ``Repository.waiting``) while its event loop serves: at
the default the loop waited up to 5 ms for the interpreter after each of its waits, so
every database round trip of a request took up to 5 ms longer while a play ran (a review's
probe: 5.31 ms a ``SELECT 1`` against 0.13 idle; 0.74 at this interval)."""


GC_THRESHOLDS = (10_000, 10, 10)
"""Python's are (700, 10, 10): a young collection every 700 allocations net."""


def settle_garbage_collector() -> None:
    """Keep Python's cyclic garbage collector from stopping a serving process for long.

    With 5,000 board sockets a full collection walked every object of the process and
    stopped it for up to 640 ms at a time (gc callbacks during ``bench.fanout``): that was
    the boards' p99. What start-up made (modules, the app, its routes: some 200,000
    objects, never garbage) is frozen out of the collector's reach, and young collections
    run every 10,000 allocations instead of every 700. Board push p99 827 → 29 ms on one
    process, 240 → 30 ms on two (docs/performance.md). Only serving processes do this:
    tests and embedders calling ``create_app`` keep their collector as it was."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
