"""A function's signature as pydantic sees it: one JSON schema out, the model's arguments in.

The parameters become a ``TypedDict`` (defaulted ones ``NotRequired``) that
pydantic turns into the tool's JSON schema — nested ``list[dict]``, ``Literal``,
``TypedDict``, dataclasses and ``Optional`` survive — and validates the model's
arguments with before the call. A parameter type pydantic cannot describe (a
DataFrame, say) accepts any JSON value, as before. ``typing.TypedDict`` classes
from a notebook are accepted on Python 3.11 too (pydantic wants the
``typing_extensions`` flavour there; they are converted).
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable
from typing import Any

import typing_extensions as te
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from pydantic_core import CoreSchema

__all__ = ["Signature", "ValidationError", "signature_of"]


class _Untitled(GenerateJsonSchema):
    """Pydantic's schema without the ``title`` noise on every property (tokens, each turn)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> Any:
        out = super().generate(schema, mode)
        out.pop("title", None)
        return out


class Signature:
    """The parameters of a function: their JSON schema, and validation of arguments."""

    def __init__(self, adapter: TypeAdapter[Any], schema: dict[str, Any]) -> None:
        self._adapter = adapter
        self.schema = schema

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments converted to the declared types; raises ``ValidationError``."""
        return dict(self._adapter.validate_python(arguments))


def signature_of(fn: Callable[..., Any]) -> Signature:
    """Read ``fn``'s parameters (``*args`` ignored; ``**kwargs`` allows extra arguments).

    Raises ``TypeError``/``ValueError``/``NameError`` when the signature cannot be read.
    """
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    extra: typing.Literal["allow", "forbid"] = "forbid"
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = _describable(_portable(hints.get(param.name, Any)))
        required = param.default is inspect.Parameter.empty
        fields[param.name] = hint if required else te.NotRequired[hint]
    arguments = with_config(ConfigDict(extra=extra))(_typed_dict("arguments", fields))
    adapter: TypeAdapter[Any] = TypeAdapter(arguments)
    schema = adapter.json_schema(schema_generator=_Untitled)
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    return Signature(adapter, schema)


def _describable(hint: Any) -> Any:
    """``hint`` if pydantic can give it a JSON schema, else ``Any`` (the model sends JSON)."""
    try:
        TypeAdapter(hint).json_schema()
    except Exception:  # pydantic raises several kinds for types it cannot describe
        return Any
    return hint


def _portable(hint: Any) -> Any:
    """``hint`` with every ``typing.TypedDict`` replaced by a ``typing_extensions`` one."""
    if typing.is_typeddict(hint):
        return _typeddict(hint) if type(hint).__module__ == "typing" else hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if not args or origin is typing.Literal:
        return hint
    new = tuple(_portable(a) for a in args)
    if new == args:
        return hint
    if origin is te.Annotated or origin is typing.Annotated:
        params = [new[0], *hint.__metadata__]
        return te.Annotated[tuple(params)]
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, new)
    return origin[new if len(new) > 1 else new[0]]


@functools.lru_cache(maxsize=64)
def _typeddict(cls: Any) -> Any:
    hints = typing.get_type_hints(cls)  # without extras: drops Required/NotRequired
    fields = {
        name: _portable(hint) if name in cls.__required_keys__ else te.NotRequired[_portable(hint)]
        for name, hint in hints.items()
    }
    converted = _typed_dict(cls.__name__, fields)
    converted.__doc__ = cls.__doc__
    return converted


def _typed_dict(name: str, fields: dict[str, Any]) -> Any:
    """A ``typing_extensions.TypedDict`` built at run time (pydantic's flavour on 3.10/3.11)."""
    factory: Any = te.TypedDict
    return factory(name, fields)
