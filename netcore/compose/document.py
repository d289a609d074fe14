"""Compose files as YAML 1.2 documents that remember where every value was written.

Compose reads its files with go-yaml, which resolves plain scalars by YAML 1.2's core schema: only
``true``/``false`` (in three spellings) are booleans, so ``on``, ``yes``, ``off`` and ``no`` stay strings
(``hostname: off`` is the host name "off"), and ``22:22`` is a string, not YAML 1.1's base-60 number.
This module does the same with PyYAML: PyYAML parses and composes the node graph (it keeps a start mark,
line and column, on every node), its YAML 1.1 resolver is replaced by the 1.2 core schema's expressions
(YAML 1.2.2, section 10.3.2), and the values are built from the nodes here, so that each one's path is
mapped to the line it came from.

Why PyYAML and not ruamel.yaml (YAML 1.2 out of the box): netcore already depends on PyYAML (with
libyaml's C parser where installed), its node graph gives a position for every key and value, which
ruamel.yaml keeps only on its round-trip container types; and the resolver is the only place the two
YAML versions differ for Compose files. Building from nodes also lets this module refuse duplicate keys
(PyYAML silently keeps the last; go-yaml refuses, and so does Compose), bound alias expansion ("billion
laughs", as compose-go bounds node visits), and read Compose's ``!reset`` and ``!override`` tags.

Merge keys (``<<: *anchor``) work as in go-yaml: keys written in the mapping win over merged ones, and
among several merged mappings the first wins. Mapping keys are strings as written (compose-go turns
every key into a string). Anything else tagged (``!!binary``, ``!custom``) is refused in one line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import yaml

from netcore.compose.errors import ComposeError, Location, Path, located

RESET_TAG = "!reset"  # Compose: remove this value from what the earlier files said (13-merge.md)
OVERRIDE_TAG = "!override"  # Compose: replace this value instead of merging it
MAX_NODE_VISITS = 100_000  # compose-go's bound on node visits, against alias bombs

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

# YAML 1.2.2 section 10.3.2, the core schema; the first characters say which expressions PyYAML tries
_CORE_SCHEMA = (
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    (_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    (_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    (_FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+.0123456789"),
    (_MERGE, re.compile(r"^<<$"), "<"),
)


def _core_schema_loader(base: type) -> type:
    loader = type(f"Core{base.__name__}", (base,), {})
    loader.yaml_implicit_resolvers = {}
    for tag, expression, first in _CORE_SCHEMA:
        loader.add_implicit_resolver(tag, expression, list(first))
    return loader


_Loader = _core_schema_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@dataclass
class Document:
    """One YAML document of a Compose file, or several merged (``netcore.compose.merge``).

    ``data``: the top-level mapping (str keys; str, int, float, bool, None, dict and list values);
    ``positions``: path -> Location of the key (mapping entries) or the item (list entries);
    ``tags``: path -> ``!reset`` or ``!override`` where a value carried one.
    """

    data: dict
    positions: dict[Path, Location] = field(default_factory=dict)
    tags: dict[Path, str] = field(default_factory=dict)
    file: str = ""

    def location(self, path: Path) -> Location | str:
        """Where ``path`` was written: its own position, else the nearest enclosing one's, else the file."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return found
        return self.file

    def error(self, path: Path, message: str) -> ComposeError:
        """``FILE:LINE: PATH: MESSAGE`` for the value at ``path``."""
        return located(self.location(path), path, message)


def parse(text: str, file: str) -> list[Document]:
    """The documents of a Compose file's ``text`` (``file``: its name in messages), empty ones left out.

    ComposeError for YAML that does not parse (``FILE:LINE:COLUMN: problem``), a top level that is not a
    mapping, a duplicate key, an unsupported tag, a recursive alias, or more than MAX_NODE_VISITS nodes.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "not valid YAML"
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise ComposeError(f"{where}: {problem}") from None
    except yaml.YAMLError as err:
        raise ComposeError(f"{file}: not valid YAML: {str(err).splitlines()[0]}") from None
    documents = []
    for node in nodes:
        if node is None:
            continue
        builder = _Builder(file)
        data = builder.build(node, ())
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ComposeError(f"{file}:{node.start_mark.line + 1}: the top level must be a mapping "
                               f"(services:, networks:, ...), not a {_kind(data)}")
        documents.append(Document(data, builder.positions, builder.tags, file))
    return documents


def _kind(value) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    return {int: "number", float: "number", str: "string"}.get(type(value), type(value).__name__)


class _Builder:
    """Builds plain values from a composed node graph, recording a Location per path."""

    def __init__(self, file: str):
        self.file = file
        self.positions: dict[Path, Location] = {}
        self.tags: dict[Path, str] = {}
        self.visits = 0
        self.active: set[int] = set()  # nodes on the path being built: an alias to one of them is a cycle

    def where(self, node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node, path: Path, message: str) -> ComposeError:
        return located(self.where(node), path, message)

    def build(self, node, path: Path):
        self.visits += 1
        if self.visits > MAX_NODE_VISITS:
            raise self.fail(node, path, f"more than {MAX_NODE_VISITS} values once aliases are expanded; "
                                        "refused (an alias bomb?)")
        if id(node) in self.active:
            raise self.fail(node, path, "an alias refers to a value that contains it (a recursive alias)")
        tag = node.tag
        if tag in (RESET_TAG, OVERRIDE_TAG):
            self.tags[path] = tag
        elif not tag.startswith("tag:yaml.org,2002:"):
            raise self.fail(node, path, f"unsupported tag {tag} (Compose knows !reset and !override)")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if tag not in (_SEQ, RESET_TAG, OVERRIDE_TAG):
                    raise self.fail(node, path, f"tag {tag} cannot go on a list")
                values = []
                for index, item in enumerate(node.value):
                    self.positions[(*path, index)] = self.where(item)
                    values.append(self.build(item, (*path, index)))
                return values
            if tag not in (_MAP, RESET_TAG, OVERRIDE_TAG):
                raise self.fail(node, path, f"tag {tag} cannot go on a mapping")
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node, path: Path) -> dict:
        values: dict = {}
        written: dict[str, Location] = {}
        merged: list = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self.merge_sources(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, path, "a mapping key must be a plain value, not a list or mapping")
            key = str(key_node.value)
            if key in written:
                raise self.fail(key_node, (*path, key), f"mapping key {key!r} already defined at line "
                                                        f"{written[key].line}")
            written[key] = self.where(key_node)
            self.positions[(*path, key)] = written[key]
            values[key] = self.build(value_node, (*path, key))
        for source in merged:  # go-yaml: written keys win; among merged mappings, the first one
            for key_node, value_node in source.value:
                key = str(key_node.value)
                if key not in values:
                    self.positions[(*path, key)] = self.where(key_node)
                    values[key] = self.build(value_node, (*path, key))
        return values

    def merge_sources(self, node, path: Path) -> list:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise self.fail(source, path, "a merge key (<<) takes a mapping or a list of mappings")
            if any(key.tag == _MERGE for key, _ in source.value):  # nested merges: flatten them first
                raise self.fail(source, path, "a mapping merged with << cannot itself use <<")
        return list(sources)

    def scalar(self, node, path: Path):
        text, tag = node.value, node.tag
        if tag in (_STR, RESET_TAG, OVERRIDE_TAG):
            return None if tag == RESET_TAG else text
        if tag == _NULL:
            if text not in ("", "~", "null", "Null", "NULL"):
                raise self.fail(node, path, f"{text!r} is not null")
            return None
        if tag == _BOOL:
            if text.lower() not in ("true", "false"):
                raise self.fail(node, path, f"{text!r} is not a boolean (YAML 1.2: true or false)")
            return text.lower() == "true"
        if tag == _INT:
            try:
                if text.startswith(("0o", "0x")):
                    return int(text[2:], 8 if text[1] == "o" else 16)
                return int(text, 10)
            except ValueError:
                raise self.fail(node, path, f"{text!r} is not an integer") from None
        if tag == _FLOAT:
            lowered = text.lower()
            if lowered.endswith(".inf"):
                return -math.inf if lowered.startswith("-") else math.inf
            if lowered == ".nan":
                return math.nan
            try:
                return float(text)
            except ValueError:
                raise self.fail(node, path, f"{text!r} is not a number") from None
        if tag == _MERGE:
            raise self.fail(node, path, "<< is a merge key, not a value")
        raise self.fail(node, path, f"unsupported tag {tag}")
