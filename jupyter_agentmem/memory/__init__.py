"""The memory engine: no I/O except through a store (``jupyter_agentmem.stores``).

- ``state.py`` (+ ``compaction.py``): one conversation, a bounded summary + recent messages.
- ``owner.py``: the seam between a state and its manager, and the lock story.
- ``manager.py`` (+ ``eviction.py``, ``books.py``): many sessions under one budget.
- ``document.py``, ``persist.py``: the stored document, merges and conflict-safe saves.
- ``policy.py``, ``defaults.py``: limits and their one source of defaults.
- ``summarize.py``, ``truncate.py``, ``sizing.py``: summaries, tool-output truncation, sizes.
- ``stats.py``: typed snapshots for dashboards and magics.
"""
