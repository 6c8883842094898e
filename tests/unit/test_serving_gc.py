"""A serving process keeps Python's cyclic garbage collector from pausing it for long.

With 5,000 board sockets a full collection walked every object of the process and stopped
it for up to 640 ms at a time (measured with gc callbacks in ``bench.fanout``), which was
the boards' p99. The serving entry (``queue_server.asgi:create_from_env``, what ``onedoor
serve`` and process managers run) freezes what start-up made and collects less often."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from queue_server.asgi import GC_THRESHOLDS

PROBE = """
import gc, json
before = gc.get_threshold()
from queue_server.asgi import create_from_env
app = create_from_env()
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "routes": len(app.routes)}))
"""


def test_the_serving_entry_freezes_start_up_and_collects_less_often(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ONEDOOR_VAR_DIR": str(tmp_path / "var"),
        "ONEDOOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["routes"] > 0
    assert tuple(seen["after"]) == GC_THRESHOLDS
    assert seen["after"][0] > seen["before"][0]  # young collections rarer than Python's own
    # The app, its routes and every module imported at start-up are out of the collector's
    # reach: a full collection no longer walks them.
    assert seen["frozen"] > 100_000


def test_an_app_made_directly_leaves_the_collector_alone(tmp_path: Path) -> None:
    """Tests and embedders call ``create_app``: their process's collector is theirs."""
    probe = (
        "import gc, json\n"
        "before = gc.get_threshold()\n"
        "from queue_server.app import create_app\n"
        "from pathlib import Path\n"
        "from queue_server.settings import Settings\n"
        f"create_app(Settings(var_dir=Path({str(tmp_path / 'v')!r}), "
        f"database_url='sqlite+aiosqlite:///{tmp_path / 'h.sqlite3'}'))\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    before, threshold, frozen = json.loads(done.stdout.strip().splitlines()[-1])
    assert threshold == before and frozen == 0
