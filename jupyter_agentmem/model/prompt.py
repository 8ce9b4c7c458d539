"""``{name}`` interpolation of notebook variables into a prompt, done once and safely.

The rule, in full (README's prompt paragraph says the same):

* A *reference* is ``{name}``, ``{name.attr}`` or ``{name[0]}`` / ``{name['key']}``,
  optionally with ``!r``/``!s``/``!a`` and a format spec of Python's mini-language
  (``{n:.2f}``, ``{n:>8,}``). A reference whose name is a notebook variable is
  replaced by the value, anywhere in the prompt (prose, JSON, code).
* Everything else is sent byte for byte: JSON (nested or not), ``{}``, Python
  dicts and set/dict comprehensions (``{k: v for k, v in d.items()}`` is not a
  reference: `` v for...`` is not a format spec), f-strings of unknown names,
  Jinja ``{{ x }}`` and ``{% %}``, LaTeX ``\\frac{{a}}{b}``, stray ``}}``.
* A reference that cannot be resolved (unknown name, failing ``.attr``/``[key]``,
  a format spec that does not apply) *in prose* raises :class:`PromptError`
  naming it, since it is most likely a typo. The same reference *in data or
  code* — inside a quoted string (``"…"``, ``'…'``, backticks, on its line),
  inside ``{…}``/``[…]``, in a fenced code block, or attached to what precedes
  it (``x_{i}``, ``\\frac{a}{b}``, ``x^{n}``) — is left as written and
  reported in :attr:`Interpolation.unknown` (the cell shows one notice line).
* Escape: ``{{name}}`` sends ``{name}`` literally where ``{name}`` would have
  been replaced or rejected. Doubled braces around anything else stay doubled.

Values are inserted in a single pass, so braces inside a value are never
expanded again. Large values are summarised for the model (a DataFrame's
shape, columns and head rather than a million-row repr).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from jupyter_agentmem.errors import AgentMemError

_REF = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\[\]{}\n]+\])*"
_SPEC = r":(?:[^{}\n]?[<>=^])?[-+ ]?z?\#?0?\d*[,_]?(?:\.\d+)?[bcdeEfFgGnosxX%]?"
_FIELD = re.compile(
    rf"\{{\{{(?P<escaped>{_REF}(?:![rsa])?(?:{_SPEC})?)\}}\}}"
    rf"|\{{(?P<ref>{_REF})(?P<conv>![rsa])?(?P<spec>{_SPEC})?\}}"
)
_HEAD = re.compile(r"[A-Za-z_]\w*")
_PART = re.compile(r"\.([A-Za-z_]\w*)|\[([^\[\]]+)\]")
# What changes the context: brackets, quotes (an escaped ``\"`` does not; a
# ``'`` between letters or digits is an apostrophe, ``what's``), line ends, fences.
_TOKEN = re.compile(r"\\.|```|[{}\[\]\"`\n]|(?<![A-Za-z0-9])'|'(?![A-Za-z0-9])")
MAX_VALUE_CHARS = 4000


class PromptError(AgentMemError):
    """A ``{name}`` in the prose of the prompt cannot be resolved (the message names it)."""


class Interpolation(NamedTuple):
    """The prompt to send, and the references left as written because they did not resolve."""

    text: str
    unknown: tuple[str, ...]


class _Unresolved(Exception):
    """A reference that cannot be resolved; ``message`` says why."""


def _resolve(ref: str, namespace: Mapping[str, Any]) -> Any:
    name = _head(ref)
    if name not in namespace:
        raise _Unresolved(
            f"{{{name}}} in the prompt is not a variable of the notebook; "
            f"define it, or write {{{{{name}}}}} for literal braces"
        )
    value = namespace[name]
    for attr, key in _PART.findall(ref[len(name) :]):
        try:
            if attr:
                value = getattr(value, attr)
            else:
                index: Any = int(key) if key.lstrip("-").isdigit() else key.strip("'\"")
                value = value[index]
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            raise _Unresolved(f"cannot evaluate {{{ref}}}: {type(exc).__name__}: {exc}") from exc
    return value


def _head(ref: str) -> str:
    match = _HEAD.match(ref)
    assert match is not None  # the field pattern starts with a name
    return match.group(0)


class _Where:
    """Tells prose from data/code at a position.

    One incremental left-to-right scan (``re.sub`` visits matches in order), run
    only as far as the last reference that failed to resolve.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._pos = 0
        self._depth = 0  # unmatched { and [
        self._odd = {'"': False, "'": False, "`": False}  # open quotes on this line
        self._fenced = False

    def in_data(self, start: int) -> bool:
        before = self.text[start - 1] if start > 0 else " "
        # ``x_{i}``, ``\\frac{a}{b}``, ``x^{n}``, ``f{x}``: LaTeX or code, not prose.
        if before.isalnum() or before in "\\_^}$":
            return True
        self._advance(start)
        return self._depth > 0 or self._fenced or any(self._odd.values())

    def _advance(self, start: int) -> None:
        for match in _TOKEN.finditer(self.text, self._pos, max(self._pos, start)):
            token = match.group()
            if token in "{[":
                self._depth += 1
            elif token in "}]":
                self._depth = max(0, self._depth - 1)
            elif token in self._odd:
                self._odd[token] = not self._odd[token]
            elif token == "\n":
                self._odd = dict.fromkeys(self._odd, False)
            elif token == "```":
                self._fenced = not self._fenced
        self._pos = max(self._pos, start)


def _render(match: re.Match[str], value: Any) -> str:
    conv, spec = match.group("conv"), match.group("spec")
    if conv == "!r":
        value = repr(value)
    elif conv == "!a":
        value = ascii(value)
    if spec:
        try:
            return format(value, spec[1:])
        except (TypeError, ValueError) as exc:
            raise _Unresolved(f"cannot format {match.group(0)}: {exc}") from exc
    return describe_value(value)


def interpolate_prompt(text: str, namespace: Mapping[str, Any]) -> Interpolation:
    """Replace references with values from ``namespace`` (one pass, bounded values).

    Raises :class:`PromptError` for an unresolvable reference in prose; see the
    module docstring for the whole rule.
    """
    where = _Where(text)
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        escaped = match.group("escaped")
        if escaped is not None:
            keep = _head(escaped) not in namespace and where.in_data(match.start())
            return token if keep else token[1:-1]
        try:
            return _render(match, _resolve(match.group("ref"), namespace))
        except _Unresolved as exc:
            if not where.in_data(match.start()):
                raise PromptError(str(exc)) from exc.__cause__
            if token not in unknown and len(unknown) < 20:
                unknown.append(token)
            return token

    return Interpolation(_FIELD.sub(replace, text), tuple(unknown))


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """The prompt with references replaced (see :func:`interpolate_prompt`)."""
    return interpolate_prompt(text, namespace).text


def describe_value(value: Any, max_chars: int = MAX_VALUE_CHARS) -> str:
    """Text of a value for the model, bounded: tables are summarised, others cut."""
    if isinstance(value, str):
        text = value
    elif all(hasattr(value, attr) for attr in ("shape", "columns", "head")):
        try:
            text = (
                f"<table of shape {tuple(value.shape)}; columns: {list(value.columns)}>\n"
                f"first rows:\n{value.head(5).to_string()}"
            )
        except Exception:
            text = repr(value)
    else:
        text = repr(value)
    if len(text) > max_chars:
        cut = len(text) - max_chars
        text = (
            text[: max_chars * 2 // 3] + f"\n...[{cut:,} chars cut]...\n" + text[-max_chars // 3 :]
        )
    return text


def unknown_notice(unknown: tuple[str, ...]) -> str | None:
    """One line for the cell about references sent as written, or None."""
    if not unknown:
        return None
    return f"not notebook variables, sent as written: {', '.join(unknown)}"
