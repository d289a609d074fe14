"""Compose errors: one line a person can act on, pointing at the file, line and key it is about.

``compose.yaml:14: services.web.ports[0]: ...`` for a value, ``compose.yaml:3:8: ...`` (line and column)
for YAML that does not parse. Paths are tuples of mapping keys (str) and list indices (int); ``dotted``
writes them as Compose's own messages do.
"""

from __future__ import annotations

from dataclasses import dataclass

from netcore.errors import NetcoreError

Path = tuple  # of str (mapping keys) and int (list indices), from the document's root


class ComposeError(NetcoreError):
    """A Compose file, its environment or its project refused: one line, nothing created or changed."""


@dataclass(frozen=True)
class Location:
    """Where a value was written: ``file`` as shown to the user, ``line`` and ``column`` counted from 1."""

    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def dotted(path: Path) -> str:
    """``("services", "web", "ports", 0)`` -> ``services.web.ports[0]``; ``()`` -> ``(top level)``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def located(where: Location | str | None, path: Path | None, message: str) -> ComposeError:
    """A ComposeError reading ``WHERE: PATH: MESSAGE``, leaving out what is None or empty."""
    parts = [str(where)] if where else []
    if path:
        parts.append(dotted(path))
    return ComposeError(": ".join([*parts, message]))


def matches(pattern: Path, path: Path) -> bool:
    """Whether ``path`` fits ``pattern``: ``"*"`` stands for any mapping key, ``"[]"`` for any list index."""
    return len(pattern) == len(path) and all(
        (want == "*" and isinstance(part, str)) or (want == "[]" and isinstance(part, int)) or want == part
        for want, part in zip(pattern, path, strict=True))
