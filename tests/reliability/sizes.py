"""How big the reliability runs are. CI runs the small size; ``PBX_BRIDGE_BIG=1`` the big one.

Each figure can also be set on its own, e.g. ``PBX_BRIDGE_CRASH_KILLS=300``.
"""

from __future__ import annotations

import os

BIG = os.environ.get("PBX_BRIDGE_BIG", "") not in ("", "0")


def _size(name: str, small: int, big: int) -> int:
    return int(os.environ.get(f"PBX_BRIDGE_{name}", big if BIG else small))


CRASH_KILLS = _size("CRASH_KILLS", 8, 120)
CRASH_EVENTS = _size("CRASH_EVENTS", 200, 4000)
CRASH_SEED = _size("CRASH_SEED", 1, 1)
FUZZ_PARSE_EXAMPLES = _size("FUZZ_PARSE_EXAMPLES", 330, 4000)  # × 31 bodies
FUZZ_HTTP_EXAMPLES = _size("FUZZ_HTTP_EXAMPLES", 500, 10_000)
SLOW_CLIENTS = _size("SLOW_CLIENTS", 100, 800)
