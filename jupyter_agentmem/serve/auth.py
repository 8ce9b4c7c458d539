"""Tenants and tokens: who is calling, and which sessions are theirs.

A tokens file has one ``TOKEN TENANT`` pair per line (``#`` starts a comment).
Each request carries ``Authorization: Bearer TOKEN``; the dependency
:meth:`Tenants.dependency` yields the tenant. Session ids are namespaced per
tenant (``tenant/<name>/<session>``), so no tenant can name another's session:
an id that is not theirs simply does not exist (404, never 403, so ids do not
leak). Without tokens the server is single-user (local mode): session ids are
used as they are, the same ids ``%%agent -s`` uses in the kernel, and the server
refuses to listen on anything but loopback (see :func:`check_bind`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Protocol

from fastapi import HTTPException, Request, status

from jupyter_agentmem.errors import ServeError, TokensFileError

#: The tenant of a server started without tokens.
LOCAL_TENANT = "local"
_TENANT_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def read_tokens_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{token: tenant}`` from a tokens file; :class:`TokensFileError` names the bad line."""
    tokens: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise TokensFileError(
                    f"{path}:{number}: expected `TOKEN TENANT` (two words), got {len(parts)}"
                )
            token, tenant = parts
            _check_pair(token, tenant, f"{path}:{number}")
            if token in tokens:
                raise TokensFileError(f"{path}:{number}: this token is already given to a tenant")
            tokens[token] = tenant
    if not tokens:
        raise TokensFileError(f"{path}: no `TOKEN TENANT` lines; add at least one")
    return tokens


def _check_pair(token: str, tenant: str, where: str) -> None:
    if len(token) < 16:
        raise TokensFileError(f"{where}: tokens must be at least 16 characters (use a random one)")
    if not _TENANT_NAME.match(tenant):
        raise TokensFileError(f"{where}: tenant names use letters, digits, _ . @ - (max 64)")


class LocalIds(Protocol):
    """How a server without tokens names sessions, when not by their plain ids: a kernel
    whose ``%%agent -s NAME`` ids are namespaced passes the same mapping, so HTTP and
    the cells share one conversation per name."""

    def key(self, name: str) -> str: ...

    def name(self, key: str) -> str | None: ...


class Tenants:
    """Token -> tenant lookup (constant-time compare) and per-tenant session ids."""

    def __init__(self, tokens: Mapping[str, str] | None, local_ids: LocalIds | None = None) -> None:
        self.tokens = dict(tokens or {})
        self.local_ids = local_ids
        for token, tenant in self.tokens.items():
            _check_pair(token, tenant, "tokens")

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def tenant_for(self, token: str) -> str | None:
        found = None
        for known, tenant in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = tenant
        return found

    def dependency(self, request: Request) -> str:
        """FastAPI dependency: the caller's tenant, or 401 saying how to authenticate."""
        if not self.enabled:
            return LOCAL_TENANT
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        tenant = self.tenant_for(token.strip()) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or unknown token: send `Authorization: Bearer <your token>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return tenant

    def key(self, tenant: str, session: str) -> str:
        """The manager's id of a tenant's session."""
        if self.enabled:
            return f"tenant/{tenant}/{session}"
        return session if self.local_ids is None else self.local_ids.key(session)

    def owns(self, tenant: str, key: str) -> str | None:
        """The tenant's own id for a manager id, or None if it is not theirs."""
        if not self.enabled:
            return key if self.local_ids is None else self.local_ids.name(key)
        prefix = f"tenant/{tenant}/"
        return key[len(prefix) :] if key.startswith(prefix) else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tenants: Tenants) -> None:
    """Refuse to listen beyond this machine without tokens (anyone could use the model)."""
    if not tenants.enabled and not is_loopback(host):
        raise ServeError(
            f"refusing to listen on {host} without tokens: pass --tokens-file PATH "
            "(lines of `TOKEN TENANT`), or listen on 127.0.0.1"
        )
