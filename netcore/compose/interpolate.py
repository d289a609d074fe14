"""Interpolation of Compose files, as Compose does it (compose-spec 12-interpolation.md, compose-go's
``template`` and ``interpolation`` packages), pure.

In every string value (never in keys):

- ``$$`` is a literal ``$``; a ``$`` followed by anything but a name, ``{`` or ``$`` stays as written;
- ``$NAME`` and ``${NAME}``: the variable's value, or "" with a warning when it is unset (names are
  ``[_a-zA-Z][_a-zA-Z0-9]*``; ``$FOO-bar`` is ``$FOO`` then ``-bar``);
- ``${NAME:-default}`` when unset or empty, ``${NAME-default}`` when unset: the default;
- ``${NAME:+replacement}`` when set and not empty, ``${NAME+replacement}`` when set: the replacement,
  else the value ("" when unset);
- ``${NAME:?message}`` when unset or empty, ``${NAME?message}`` when unset: an error with the message;
- defaults, replacements and messages are interpolated in turn, and only when used (``${A:-${B}}``);
  they end at the ``}`` that closes the opening one, counting braces on the same line, so
  ``${J:-{"a":1}}`` defaults to ``{"a":1}``;
- ``${`` followed by anything else (``${}``, ``${ foo}``, ``${foo!}``, a newline before the ``}``) is an
  invalid template: an error naming it.

After interpolation, values at the paths Compose types (``CASTS``: ``deploy.replicas``, ``scale``,
``ports[].target``, ``internal``, ``enable_ipv6``, ...) are turned from strings into integers or
booleans, as compose-go's ``interpolateTypeCastMapping`` does: a boolean is ``true``/``false`` in any
case, and YAML 1.1's ``yes``/``on``/``y``/``no``/``off``/``n`` are read with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from netcore.compose.document import Document
from netcore.compose.errors import Path, dotted, matches

Lookup = Callable[[str], "str | None"]  # a variable's value, None when unset

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":-", ":+", ":?", "-", "+", "?")


class InterpolationError(ValueError):
    """A template Compose refuses: an invalid ``${...}``, or a required variable without a value."""


class _Substitution:
    """One string's interpolation; ``unset`` collects the variables read while unset (Compose warns)."""

    def __init__(self, lookup: Lookup, unset: list[str]):
        self.lookup = lookup
        self.unset = unset

    def run(self, text: str) -> str:
        out = []
        i, end = 0, len(text)
        while i < end:
            dollar = text.find("$", i)
            if dollar < 0:
                out.append(text[i:])
                break
            out.append(text[i:dollar])
            following = text[dollar + 1:dollar + 2]
            name = _NAME.match(text, dollar + 1)
            if following == "$":
                out.append("$")
                i = dollar + 2
            elif name:
                out.append(self.plain(name.group()))
                i = name.end()
            elif following == "{":
                value, i = self.braced(text, dollar)
                out.append(value)
            else:
                out.append("$")
                i = dollar + 1
        return "".join(out)

    def plain(self, name: str) -> str:
        value = self.lookup(name)
        if value is None:
            if name not in self.unset:
                self.unset.append(name)
            return ""
        return value

    def braced(self, text: str, dollar: int) -> tuple[str, int]:
        """(the value of the ``${...}`` at ``dollar``, the index after it)."""
        name = _NAME.match(text, dollar + 2)
        if name is None:
            raise self.invalid(text)
        after = name.end()
        if text.startswith("}", after):
            return self.plain(name.group()), after + 1
        operator = next((op for op in _OPERATORS if text.startswith(op, after)), None)
        line_end = text.find("\n", after)
        line_end = len(text) if line_end < 0 else line_end
        last = text.rfind("}", after, line_end)  # Compose's expression runs to the last } of the line ...
        if operator is None or last < 0:
            raise self.invalid(text)
        close = _closing_brace(text, dollar, last)  # ... and its argument to the brace that closes ${
        argument = text[after + len(operator):close]
        return self.apply(name.group(), operator, argument), close + 1

    def apply(self, name: str, operator: str, argument: str) -> str:
        value = self.lookup(name)
        empty = value is None or (operator.startswith(":") and value == "")
        kind = operator[-1]
        if kind == "-":
            return self.run(argument) if empty else value
        if kind == "+":
            return (value or "") if empty else self.run(argument)
        if empty:  # "?"
            reason = self.run(argument)
            raise InterpolationError(f"required variable {name} is missing a value" + (f": {reason}" if reason
                                                                                       else ""))
        return value

    @staticmethod
    def invalid(text: str) -> InterpolationError:
        return InterpolationError(f"invalid interpolation format {text!r}: a literal $ is written $$")


def _closing_brace(text: str, dollar: int, last: int) -> int:
    """The index of the ``}`` closing the ``${`` at ``dollar``, counting braces up to ``last`` (compose-go's
    getFirstBraceClosingIndex: an opening brace also skips the character after it); ``last`` if none does."""
    depth = 0
    i = dollar
    while i <= last:
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        if text[i] == "{":
            depth += 1
            i += 1
        i += 1
    return last


def substitute(text: str, lookup: Lookup) -> tuple[str, list[str]]:
    """``text`` interpolated (module docstring) -> (result, names read while unset, in order, once each).

    InterpolationError for an invalid template or a required variable without a value."""
    unset: list[str] = []
    return _Substitution(lookup, unset).run(text), unset


# -- typed values -------------------------------------------------------------------------------------------

_TRUE = ("y", "yes", "on")
_FALSE = ("n", "no", "off")


def _to_int(text: str) -> int:
    if not re.fullmatch(r"[-+]?[0-9]+", text.strip()):
        raise ValueError(f"{text!r} is not an integer")
    return int(text)


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _to_bool(text: str, warnings: list[str], where: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in _TRUE + _FALSE:
        value = lowered in _TRUE
        warnings.append(f"{where}: {text!r} for a boolean is YAML 1.1, read as {str(value).lower()}; "
                        f"write {str(value).lower()}")
        return value
    raise ValueError(f"{text!r} is not a boolean (true or false)")


_S = ("services", "*")
_N = ("networks", "*")
# compose-go loader/interpolate.go: the paths whose string values become typed after interpolation
CASTS: dict[Path, str] = {
    **{(*_S, key): "int" for key in ("cpu_count", "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime",
                                    "cpu_shares", "oom_score_adj", "pids_limit", "scale")},
    **{(*_S, key): "float" for key in ("cpu_percent", "cpus")},
    **{(*_S, key): "bool" for key in ("init", "oom_kill_disable", "privileged", "read_only", "stdin_open", "tty")},
    (*_S, "depends_on", "*", "required"): "bool",
    (*_S, "depends_on", "*", "restart"): "bool",
    (*_S, "deploy", "replicas"): "int",
    (*_S, "deploy", "update_config", "parallelism"): "int",
    (*_S, "deploy", "update_config", "max_failure_ratio"): "float",
    (*_S, "deploy", "rollback_config", "parallelism"): "int",
    (*_S, "deploy", "rollback_config", "max_failure_ratio"): "float",
    (*_S, "deploy", "restart_policy", "max_attempts"): "int",
    (*_S, "deploy", "placement", "max_replicas_per_node"): "int",
    (*_S, "healthcheck", "retries"): "int",
    (*_S, "healthcheck", "disable"): "bool",
    (*_S, "ports", "[]", "target"): "int",
    (*_S, "ulimits", "*"): "int",
    (*_S, "ulimits", "*", "hard"): "int",
    (*_S, "ulimits", "*", "soft"): "int",
    (*_S, "volumes", "[]", "read_only"): "bool",
    (*_S, "volumes", "[]", "volume", "nocopy"): "bool",
    **{(*_N, key): "bool" for key in ("external", "internal", "attachable", "enable_ipv4", "enable_ipv6")},
    **{(kind, "*", "external"): "bool" for kind in ("volumes", "secrets", "configs")},
}


def _cast_for(path: Path) -> str | None:
    return next((kind for pattern, kind in CASTS.items() if matches(pattern, path)), None)


def interpolate(document: Document, lookup: Lookup) -> tuple[Document, list[str]]:
    """``document`` with every string value interpolated and Compose's typed paths cast (module
    docstring) -> (a new Document with the same positions, warnings: unset variables and YAML 1.1
    booleans, one line each). ComposeError ``FILE:LINE: PATH: ...`` for an invalid template, a required
    variable without a value, or a typed value that is not of its type."""
    unset: list[str] = []
    warnings: list[str] = []

    def walk(value, path: Path):
        if isinstance(value, dict):
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*path, index)) for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        try:
            text = _Substitution(lookup, unset).run(value)
        except InterpolationError as err:
            raise document.error(path, str(err)) from None
        kind = _cast_for(path)
        try:
            if kind == "int":
                return _to_int(text)
            if kind == "float":
                return _to_float(text)
            if kind == "bool":
                return _to_bool(text, warnings, f"{document.location(path)}: {dotted(path)}")
        except ValueError as err:
            raise document.error(path, str(err)) from None
        return text

    data = walk(document.data, ())
    notes = [f"the {name!r} variable is not set: using a blank string" for name in unset]
    return Document(data, document.positions, document.tags, document.file), notes + warnings
