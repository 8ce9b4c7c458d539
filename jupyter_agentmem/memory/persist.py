"""Saving session documents to a store without losing or duplicating a turn.

Pure functions over a ``SessionStore``: no manager state, no locks. The
manager calls them with its lock released (store I/O may be slow).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Sequence

from jupyter_agentmem.errors import SessionConflictError
from jupyter_agentmem.stores.base import SessionStore

from .document import (
    Document,
    content_write_id,
    field,
    merge_documents,
    with_write,
    writes_of,
)
from .replay import load_with_log

CONFLICT_RETRIES = 12

#: A save whose outcome is unknown (interrupted, timed out): its write id and the
#: ``messages_total`` it covered.
Pending = tuple[str, int]


def unsaved_after(
    stored: Document | None, local_total: int, base: int, pending: Sequence[Pending]
) -> int:
    """How many of the local messages the stored copy lacks: those after the newest
    of our writes found in its lineage, else after ``base`` (the last confirmed save)."""
    lineage = set(writes_of(stored))
    for write_id, covered in reversed(pending):
        if write_id in lineage:
            return local_total - covered
    return local_total - base


def save_merging(
    store: SessionStore,
    sid: str,
    doc: Document,
    base: int,
    pending: Sequence[Pending],
    max_summary_chars: int,
    on_merge: Callable[[], None] = lambda: None,
    writer: str | None = None,
) -> tuple[Document, bool]:
    """Save ``doc``; on a revision conflict merge with the stored copy and retry.

    ``base`` is the ``messages_total`` of the last save known to have landed;
    ``pending`` lists writes that may have landed (newest last, ``doc``'s own
    included). Returns the document now in the store (``doc`` itself, a merge,
    or the stored copy when it already held every local message) and whether
    this call wrote it.
    """
    local_total = int(field(doc, "messages_total"))
    for attempt in range(CONFLICT_RETRIES):
        try:
            store.save(sid, doc)
            return doc, True
        except SessionConflictError:
            if attempt:  # two kernels saving in lockstep: let one of them win
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
        stored = store.load(sid)
        unsaved = unsaved_after(stored, local_total, base, pending)
        if stored is not None and unsaved <= 0:
            return stored, False  # our write landed before (Ctrl-C, a lost reply): nothing to add
        doc = merge_documents(stored, doc, unsaved, max_summary_chars, writer)
        on_merge()
    raise SessionConflictError(
        f"session {sid!r} kept changing in the store ({CONFLICT_RETRIES} tries); "
        "it stays in memory and is saved at the next eviction or flush"
    )


def migrate(
    old: SessionStore,
    new: SessionStore,
    skip: Collection[str],
    max_summary_chars: int,
    on_merge: Callable[[], None] = lambda: None,
) -> int:
    """Copy every session of ``old`` (but ``skip``) into ``new``, merging with what
    another writer keeps there like any conflicting save. A copy already merged
    (found by write id) is not merged twice, so an interrupted migration can be
    run again. Returns how many sessions were copied or merged."""
    copied = 0
    for sid in old.list_ids():
        if sid in skip:
            continue
        doc = load_with_log(old, sid)  # with its logged turns
        if doc is None:
            continue
        doc.pop("log_marks", None)  # they describe the old store's log
        lineage = writes_of(doc)
        write_id = lineage[-1] if lineage else content_write_id(doc)
        doc = with_write(dict(doc, revision=1), lineage[:-1], write_id)
        total = int(field(doc, "messages_total"))
        pending = [(write_id, total)]
        copied += save_merging(new, sid, doc, 0, pending, max_summary_chars, on_merge)[1]
    return copied
