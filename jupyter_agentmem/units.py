"""Units and floors every layer shares: one byte formatter, one refresh floor, one budget floor.

Bottom of the package (next to :mod:`.errors`): it imports nothing of ours, so
the notebook face, the watch side and the memory engine can all use it.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB

#: The shortest refresh or check interval of a background thread (dashboard
#: ticker, memory guard, per-cell sampler): faster only burns a core.
MIN_INTERVAL_SECONDS = 0.05

#: The smallest in-memory budget a SessionManager accepts (``max_memory_bytes``).
MIN_MEMORY_BUDGET_BYTES = 64 * KiB

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float | None, decimals: int = 1) -> str:
    """``1536`` -> ``"1.5 KiB"``, ``300 * MiB`` -> ``"300.0 MiB"``, ``None`` -> ``"n/a"``.

    Bytes are whole (``"512 B"``); larger units get ``decimals`` digits.
    """
    if n is None:
        return "n/a"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.{decimals}f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
