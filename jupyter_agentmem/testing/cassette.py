"""Record and replay real model exchanges (a tiny VCR for chat completions).

Why: a notebook regression test should be able to talk to a real model once,
keep what it said, and replay it byte-for-byte forever after, offline and for
free, through the very same SDK code path. :class:`~.server.FakeModelServer`
does the HTTP; this module owns the file format, request matching and the
upstream forwarding, and knows nothing about the server.

Secrets: request headers are never written. Only the normalised request body
fields listed in :data:`KEY_FIELDS` and the response are stored, and any secret
string the caller hands to :meth:`Interaction.redacted` (the recorder passes the
request's API key) is scrubbed from both — a key pasted into a prompt or returned
by a tool included. A redacted request keeps the match key of the original
(a SHA-256 of the whole request, which does not reveal the key), so replaying the
same request still finds it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jupyter_agentmem.demo.reply import content_text
from jupyter_agentmem.errors import AgentMemError

__all__ = [
    "FORWARDED_HEADERS",
    "KEY_FIELDS",
    "Cassette",
    "CassetteError",
    "Interaction",
    "iter_lines",
    "iter_sse_data",
    "normalise_request",
    "open_upstream",
    "request_key",
]

FORMAT = "jupyter-agentmem-cassette"
_SHA256 = re.compile(r"[0-9a-f]{64}")
VERSION = 1

#: Request fields that decide which recorded interaction answers a request.
KEY_FIELDS = (
    "model",
    "messages",
    "tools",
    "tool_choice",
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "stream",
)

#: Client headers passed on to the upstream (lower case). Never written to disk.
FORWARDED_HEADERS = (
    "authorization",
    "api-key",
    "content-type",
    "accept",
    "openai-organization",
    "openai-project",
)


class CassetteError(AgentMemError):
    """A cassette file is missing, unreadable or not a jupyter-agentmem cassette."""


def normalise_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a request that matter for matching (``None`` values dropped)."""
    return {k: body[k] for k in KEY_FIELDS if body.get(k) is not None}


def request_key(body: Mapping[str, Any]) -> str:
    """A stable hash of the normalised request (key order and spacing do not matter)."""
    canonical = json.dumps(
        normalise_request(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def describe_request(body: Mapping[str, Any]) -> str:
    """Short human description of a request: model and a digest of the last message."""
    messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
    last = " ".join(content_text(messages[-1]).split()) if messages else ""
    digest = last if len(last) <= 40 else last[:39] + "…"
    return f"model={body.get('model')!r}, last message {digest!r}"


@dataclass(frozen=True, slots=True)
class Interaction:
    """One recorded exchange: the normalised request and the response as served.

    ``chunks`` holds the SSE ``data:`` payloads of a streamed response in order
    (``"[DONE]"`` included when the upstream sent it); ``body`` holds a
    non-streamed JSON (or text) body. Exactly one of them is used.
    """

    request: dict[str, Any]
    status: int
    chunks: tuple[str, ...] | None = None
    body: Any = None
    content_type: str = "application/json"
    #: The key of the request as sent, when the stored ``request`` was redacted.
    match_key: str | None = None

    def __post_init__(self) -> None:
        # Only the matching fields are kept: nothing else from the request reaches the file.
        object.__setattr__(self, "request", normalise_request(self.request))

    @property
    def key(self) -> str:
        return self.match_key or request_key(self.request)

    def redacted(self, secrets: Iterable[str]) -> Interaction:
        """A copy with every occurrence of each (non-trivial) secret string replaced."""
        present = [s for s in secrets if len(s) >= 8]
        if not present:
            return self

        def scrub(text: str) -> str:
            for secret in present:
                text = text.replace(secret, "***")
            return text

        body = self.body
        if body is not None:
            body = json.loads(scrub(json.dumps(body)))
        chunks = None if self.chunks is None else tuple(scrub(c) for c in self.chunks)
        request = json.loads(scrub(json.dumps(self.request)))
        match_key = self.key if request != self.request else self.match_key
        return replace(self, chunks=chunks, body=body, request=request, match_key=match_key)

    def to_json(self) -> dict[str, Any]:
        response: dict[str, Any] = {"status": self.status, "content_type": self.content_type}
        if self.chunks is not None:
            response["chunks"] = list(self.chunks)
        else:
            response["body"] = self.body
        stored: dict[str, Any] = {"key": self.key, "request": self.request, "response": response}
        if self.match_key is not None:
            stored["redacted"] = True  # the key is the original request's: trust it on load
        return stored

    @classmethod
    def from_json(cls, obj: object) -> Interaction:
        """Parse one stored interaction; raises ``ValueError`` on a wrong shape."""
        if not isinstance(obj, dict):
            raise ValueError("an interaction is not a JSON object")
        request, response = obj.get("request"), obj.get("response")
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise ValueError("an interaction lacks a 'request' or 'response' object")
        status = response.get("status")
        if not isinstance(status, int):
            raise ValueError("a response lacks an integer 'status'")
        chunks = response.get("chunks")
        if chunks is not None and not (
            isinstance(chunks, list) and all(isinstance(c, str) for c in chunks)
        ):
            raise ValueError("response 'chunks' must be a list of strings")
        key = obj.get("key")
        if obj.get("redacted") is True and not (isinstance(key, str) and _SHA256.fullmatch(key)):
            raise ValueError("a redacted interaction lacks its 64-hex-digit 'key'")
        return cls(
            request=normalise_request(request),
            status=status,
            chunks=None if chunks is None else tuple(chunks),
            body=response.get("body"),
            content_type=str(response.get("content_type", "application/json")),
            match_key=key if obj.get("redacted") is True else None,
        )


class Cassette:
    """A JSON file of interactions, safe to use from the server's handler threads.

    Replay serves repeated identical requests in recorded order and, once they
    are used up, keeps serving the last one (so a re-run cell still gets an answer).
    """

    def __init__(self, path: str | os.PathLike[str], interactions: Iterable[Interaction] = ()):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._items: list[Interaction] = list(interactions)
        self._served: dict[str, int] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Cassette:
        """Read a cassette; raises :class:`CassetteError` saying what is wrong and what to do."""
        where = Path(path)
        try:
            raw = json.loads(where.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CassetteError(
                f"Cassette {where} does not exist: record it first with "
                "FakeModelServer(record_to=..., upstream=...)."
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CassetteError(
                f"Cassette {where} is not readable JSON ({exc}); delete it and record again."
            ) from exc
        try:
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise ValueError(f'it has no "format": "{FORMAT}" header')
            if raw.get("version") != VERSION:
                raise ValueError(f"version {raw.get('version')!r} is not {VERSION}")
            items = raw.get("interactions")
            if not isinstance(items, list):
                raise ValueError("'interactions' is not a list")
            interactions = [Interaction.from_json(item) for item in items]
        except ValueError as exc:
            raise CassetteError(
                f"Cassette {where} is not a jupyter-agentmem cassette: {exc}; "
                "delete it and record again."
            ) from exc
        return cls(where, interactions)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def interactions(self) -> list[Interaction]:
        with self._lock:
            return list(self._items)

    def append(self, interaction: Interaction) -> None:
        """Add an interaction and save the whole file atomically."""
        with self._lock:
            self._items.append(interaction)
            self._save_locked()

    def save(self) -> None:
        """Write the file atomically (temp file in the same directory, then ``os.replace``)."""
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        document = {
            "format": FORMAT,
            "version": VERSION,
            "interactions": [i.to_json() for i in self._items],
        }
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, ensure_ascii=False)
                handle.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def match(self, body: Mapping[str, Any]) -> Interaction | None:
        """The next recorded answer for this request, or ``None`` when nothing matches."""
        key = request_key(body)
        with self._lock:
            candidates = [i for i in self._items if i.key == key]
            if not candidates:
                return None
            served = self._served.get(key, 0)
            self._served[key] = served + 1
            return candidates[min(served, len(candidates) - 1)]

    def miss_message(self, body: Mapping[str, Any]) -> str:
        """Error text for a request the cassette cannot answer (names request and file)."""
        return (
            f"No interaction in cassette {self.path} matches this request "
            f"({describe_request(body)}, key {request_key(body)[:12]}). "
            "Record it again with FakeModelServer(record_to=..., upstream=...)."
        )


def open_upstream(
    upstream: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
) -> http.client.HTTPConnection:
    """POST ``body`` to ``upstream`` + ``path``; the caller then calls ``getresponse()``.

    ``upstream`` is a base URL such as ``https://api.openai.com/v1``; ``path`` is
    the part after ``/v1`` (``/chat/completions``). Only :data:`FORWARDED_HEADERS`
    are passed on. The response is left unread so the caller can first register
    ``conn.sock`` for cancellation, then stream it. The caller must close ``conn``.
    """
    url = urllib.parse.urlsplit(upstream.rstrip("/"))
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname, url.port, timeout=timeout)
    sent = {k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
    sent["Content-Length"] = str(len(body))
    try:
        conn.request("POST", url.path + path, body=body, headers=sent)
        return conn
    except BaseException:
        conn.close()
        raise


def iter_lines(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    """Lines of a streamed upstream body as they arrive; ``IncompleteRead`` if it was cut.

    Why ``read1`` and not ``readline``: ``http.client`` reports a chunked body that
    ends without its final zero-length chunk as a quiet end of file when read line
    by line, so a dropped stream would be recorded as a complete answer. ``read1``
    raises instead, and returns whatever has arrived without waiting for more.
    """
    partial = b""
    while data := resp.read1(65536):
        *lines, partial = (partial + data).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if partial:
        yield partial


def iter_sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """Yield the ``data:`` payload of each server-sent event, as soon as it is complete."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
