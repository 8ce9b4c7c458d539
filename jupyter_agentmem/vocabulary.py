"""Words of the wire format that more than one layer reads or writes.

Bottom of the package (next to :mod:`.units`): the memory engine writes these
and the demo model recognises them, and the two sit side by side on one layer,
so the one source lives below both.
"""

from __future__ import annotations

#: The system message that carries the running summary to the model.
SUMMARY_PREFIX = "Summary of earlier conversation:\n"
