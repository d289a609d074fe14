"""``.env`` and ``--env-file`` files, read as Compose reads them; pure (text in, variables out).

The syntax (``KEY=value``, ``export KEY=value``, ``#`` comments, single- and double-quoted values over
several lines, ``\\n`` escapes in double quotes, a bare ``KEY`` taking the value from the environment) is
parsed by python-dotenv's parser (``dotenv.parser.parse_stream``). Its own expansion is not used: it
knows only ``${VAR}`` and ``${VAR:-default}`` and lets the file's values win over the environment,
where Compose expands with its full grammar (``netcore.compose.interpolate``) and looks a name up in the
environment first, then in the values the file set before (compose-go ``dotenv.GetEnvFromFile``). As in
Compose, single-quoted values are taken literally, ``\\$`` in double quotes is a literal ``$``, and a line
that is not ``KEY=value`` is an error naming it (python-dotenv would only warn).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from dotenv.parser import parse_stream

from netcore.compose.errors import ComposeError
from netcore.compose.interpolate import InterpolationError, substitute


def _quote(original: str) -> str:
    """The quote a binding's value was written in ('' unquoted), from the binding's source text."""
    _, _, value = original.partition("=")
    value = value.lstrip(" \t")
    return value[:1] if value[:1] in ("'", '"') else ""


def parse_env(text: str, source: str, environment: Mapping[str, str],
              defined: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables an env file sets, in order -> {name: value}.

    ``source``: the file's name in messages; ``environment``: the process environment, which expansions
    read first; ``defined``: variables earlier env files set, read next (then this file's own earlier
    lines). ComposeError ``SOURCE:LINE: ...`` for a line that is not a binding or an invalid expansion.
    """
    values: dict[str, str] = {}
    earlier = dict(defined or {})

    def lookup(name: str) -> str | None:
        if name in environment:
            return environment[name]
        if name in values:
            return values[name]
        return earlier.get(name)

    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            first = binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else ""
            raise ComposeError(f"{source}:{line}: not a KEY=VALUE line: {first!r}")
        if binding.key is None:  # a comment or a blank line
            continue
        if binding.value is None:  # a bare KEY: the environment's value, if it has one
            inherited = lookup(binding.key)
            if inherited is not None:
                values[binding.key] = inherited
            continue
        quote = _quote(binding.original.string)
        if quote == "'":
            values[binding.key] = binding.value
            continue
        value = binding.value.replace("\\$", "$$") if quote == '"' else binding.value
        try:
            values[binding.key], _ = substitute(value, lookup)
        except InterpolationError as err:
            raise ComposeError(f"{source}:{line}: {binding.key}: {err}") from None
    return values
