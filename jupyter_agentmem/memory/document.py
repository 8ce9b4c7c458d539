"""The session document: what a store keeps for one session, and how two copies merge.

A document is the JSON output of ``ConversationState.to_dict()``. Besides the
content it carries the save bookkeeping that makes concurrent writers safe:
``revision`` (checked by every store, see ``stores/base.py``) and ``writes``,
the ids of the last few saves that went into it. A writer that was interrupted
(Ctrl-C, a timeout) does not know whether its save landed; it looks for its
write id in ``writes`` of the stored copy instead of guessing, so it neither
loses nor duplicates its turns.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from array import array
from dataclasses import dataclass
from typing import Any

from jupyter_agentmem.errors import InvalidMessageError, StoreCorruptError

from .policy import StatePolicy
from .sizing import message_size

Message = dict[str, Any]
Document = dict[str, Any]

FORMAT_VERSION = 1
LINEAGE = 8  # write ids kept per document (bounded)
MAX_LOG_MARKS = 32  # turn-log writers remembered per document (stores/base.py, "turn log")

# Current field names, and the names older versions wrote (still read).
_OLD_NAMES = {
    "messages_total": "total_turns",
    "truncated_chars_saved": "truncated_bytes_saved",
    "turns": "user_turns",
}


def field(doc: Document, name: str, default: Any = 0) -> Any:
    """``doc[name]``, falling back to the name an older version used."""
    if name in doc:
        return doc[name]
    old = _OLD_NAMES.get(name)
    return doc.get(old, default) if old is not None else default


def count_user_turns(messages: list[Message]) -> int:
    """How many of ``messages`` are the user's (one per question asked)."""
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")


def new_write_id() -> str:
    return secrets.token_hex(4)


def content_write_id(doc: Document) -> str:
    """A write id derived from the content, for documents saved before ids existed:
    copying the same document twice gives the same id, so it is merged once."""
    body = {k: v for k, v in doc.items() if k not in ("revision", "writes")}
    text = json.dumps(body, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def writes_of(doc: Document | None) -> list[str]:
    writes = doc.get("writes") if doc is not None else None
    return [w for w in writes if isinstance(w, str)] if isinstance(writes, list) else []


def with_write(doc: Document, lineage: list[str], write_id: str) -> Document:
    """``doc`` stamped with one more write id on top of ``lineage`` (bounded)."""
    doc["writes"] = [*lineage, write_id][-LINEAGE:]
    return doc


def log_marks_of(doc: Document | None) -> dict[str, int]:
    """``{writer: seq}``: the newest turn-log entry of each writer the document holds."""
    marks = doc.get("log_marks") if doc is not None else None
    if not isinstance(marks, dict):
        return {}
    try:
        return {str(w): int(seq) for w, seq in marks.items()}
    except (TypeError, ValueError) as exc:
        raise StoreCorruptError(f"damaged log_marks: {exc}") from exc


def _stored_turns(stored: Document) -> int:
    """The user turns of a stored copy (counted from its messages when it was
    written before user turns were counted)."""
    stored_turns = field(stored, "turns", None)
    if stored_turns is None:
        stored_turns = count_user_turns(stored.get("messages", []))
    return int(stored_turns)


def _merged_marks(stored: dict[str, int], local: dict[str, int]) -> dict[str, int]:
    """Each writer's turn-log mark, the higher of the two copies (marks only grow)."""
    marks = {w: max(seq, local.get(w, 0)) for w, seq in stored.items()}
    marks.update({w: seq for w, seq in local.items() if w not in marks})
    return marks


def merge_documents(
    stored: Document | None,
    local: Document,
    unsaved: int,
    max_summary_chars: int,
    writer: str | None = None,
) -> Document:
    """Merge a session changed here with the copy another writer saved meanwhile.

    Semantics (documented in the README): the stored copy wins for everything it
    has; the ``unsaved`` messages this writer added since its last save that
    landed are appended after the stored ones, so concurrent turns from two
    kernels are all kept, the other kernel's first. If some of them were
    already folded into the local summary, that summary is appended to the
    stored one (bounded), so nothing is dropped silently. The merged document
    takes the stored revision + 1 and the local write id on top of the stored
    lineage.

    ``writer`` names this process in the turn log: local messages that the stored
    copy already holds (another process replayed them from the log, see
    ``log_marks``) are not appended a second time.
    """
    added = max(0, unsaved)
    local_writes = writes_of(local)
    if stored is None:
        return dict(local, revision=1)
    local_marks, stored_marks = log_marks_of(local), log_marks_of(stored)
    if writer is not None and writer in local_marks:
        added = min(added, max(0, local_marks[writer] - stored_marks.get(writer, 0)))
    local_messages: list[Message] = local["messages"]
    fresh = local_messages[-added:] if added else []
    merged = dict(stored)
    merged.pop("total_turns", None)
    merged.pop("truncated_bytes_saved", None)
    merged.pop("user_turns", None)
    merged["messages"] = list(stored.get("messages", [])) + fresh
    merged["messages_total"] = int(field(stored, "messages_total")) + added
    merged["turns"] = _stored_turns(stored) + count_user_turns(fresh)
    merged["last_access"] = max(float(stored.get("last_access", 0)), float(local["last_access"]))
    merged["truncated_chars_saved"] = max(
        int(field(stored, "truncated_chars_saved")), int(field(local, "truncated_chars_saved"))
    )
    if added > len(local_messages) and local.get("summary"):
        note = "\n[merged from another kernel] " + str(local["summary"])
        merged["summary"] = (str(stored.get("summary", "")) + note)[-max_summary_chars:]
    if marks := _merged_marks(stored_marks, local_marks):
        merged["log_marks"] = marks
    merged["revision"] = int(stored.get("revision", 0)) + 1
    if local_writes:
        with_write(merged, writes_of(stored), local_writes[-1])
    return merged


@dataclass(frozen=True)
class Parsed:
    """A checked document, measured and ready to become a state's content."""

    messages: list[Message]
    sizes: array[int]
    tokens: array[int]
    summary: str
    messages_total: int
    turns: int
    compactions: int
    truncated_chars_saved: int
    created_at: float
    last_access: float
    revision: int
    lineage: str


def parse_document(data: Document, session_id: str, policy: StatePolicy) -> Parsed:
    """Check and measure a stored document; :class:`StoreCorruptError` names what is
    wrong (older field names are still read)."""
    if data.get("format") != FORMAT_VERSION:
        raise StoreCorruptError(
            f"session {session_id!r}: unknown document format {data.get('format')!r}; "
            "was it written by a newer jupyter-agentmem?"
        )
    messages = data.get("messages")
    summary = data.get("summary", "")
    if not isinstance(messages, list) or not isinstance(summary, str):
        raise StoreCorruptError(f"session {session_id!r}: damaged messages or summary")
    try:
        sizes = array("q", (message_size(m) for m in messages))
        tokens = array("q", policy.count_tokens(messages) or ())
        turns = field(data, "turns", None)
        if turns is None:  # written before user turns were counted
            turns = count_user_turns(messages)
        created = float(data.get("created_at", time.time()))
        return Parsed(
            messages,
            sizes,
            tokens,
            summary,
            int(field(data, "messages_total", len(messages))),
            int(turns),
            int(data.get("compactions", 0)),
            int(field(data, "truncated_chars_saved")),
            created,
            float(data.get("last_access", created)),
            int(data.get("revision", 0)),
            " ".join(writes_of(data)),
        )
    except (InvalidMessageError, TypeError, ValueError) as exc:
        raise StoreCorruptError(f"session {session_id!r}: {exc}") from exc
