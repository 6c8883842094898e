"""Unit tests of the pure domain core: no database, no event loop, no network.

The project is not installed into the virtualenv and pytest's default import mode puts only
this directory on ``sys.path``, so the checkout's root is added here when the package cannot
be imported otherwise. An installed (editable) package always wins.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("queue_server") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
