"""Docker's ``--format`` and ``--filter`` over plain documents (``netcore.views``' inspect documents, or any
dict of str keys), pure.

**Formats** (``render``), as the Docker CLI takes them (docs.docker.com, "Format command and log output"):

- none or ``table``: the command's default table; ``table TEMPLATE``: a table whose columns are the
  template's tab-separated cells, headed by each cell's field (``{{.ID}}`` -> ``ID``, ``{{.NetworkID}}``
  -> ``NETWORK ID``, or the command's own header names);
- ``json``: each document as one line of JSON;
- anything else: a Go template, rendered once per document, one line each.

**Templates** (a subset of Go's text/template that Docker's documentation uses): ``{{.Name}}``,
``{{.NetworkSettings.Networks}}`` (a dot path; a key missing at the top is an error naming the fields,
deeper down it prints ``<no value>`` as Go does for maps), ``{{json .X}}``, ``{{index .Labels "k"}}``,
``{{join .X ", "}}``, ``{{upper .X}}``, ``{{lower .X}}``, ``{{title .X}}``, ``{{len .X}}``, ``{{println .X}}``,
pipes (``{{.Name | upper}}``), ``{{if .X}}..{{else}}..{{end}}``, ``{{range .X}}..{{end}}`` (dot becomes each
item; a mapping's values by sorted key), ``{{range $k, $v := .X}}`` with ``{{$k}}``/``{{$v}}``, and
``{{-``/``-}}`` trimming. Values print as Go prints them: ``true``, ``map[a:1 b:2]``, ``[a b]``.

**Filters** (``parse_filters``, ``matches``): ``KEY=VALUE`` each; values of one key are alternatives,
different keys must all match (Docker's rule). ``name=`` matches part of the name (a regular expression,
as Docker's), ``id=`` a prefix of the ID, ``label=KEY`` / ``label=KEY=VALUE``, ``network=`` (a network's
name or ID prefix the container is on), ``status=`` (``created``, ``restarting``, ``running``,
``removing``, ``paused``, ``exited``, ``dead``), ``driver=`` and ``scope=`` (networks). An unknown key or
status is a FormatError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from netcore.cli.views import table
from netcore.errors import NetcoreError


class FormatError(NetcoreError):
    """A ``--format`` template or ``--filter`` that cannot be used: one line saying why."""


NO_VALUE = "<no value>"
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


# -- printing values as Go does --------------------------------------------------------------------------------


def go_text(value) -> str:
    """A value as Go's fmt prints it in a template: ``true``, ``map[a:1]``, ``[a b]``, ``<no value>``."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    return str(value)


def _truth(value) -> bool:
    return bool(value) and value != NO_VALUE


# -- templates --------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\{\{(-\s*)?(.*?)(\s*-)?\}\}", re.S)
_ARG = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(\$[A-Za-z_0-9]*(?:\.[A-Za-z_0-9]+)*)|(\.[A-Za-z_0-9.]*)'
                  r"|([A-Za-z_][A-Za-z_0-9]*)|(-?[0-9]+)|(\|))")
_RANGE_VARS = re.compile(r"range\s+\$(\w+)\s*(?:,\s*\$(\w+)\s*)?:=\s*(.*)$", re.S)


@dataclass
class _Node:
    kind: str  # text, action, if, range
    text: str = ""
    body: list | None = None
    other: list | None = None
    names: tuple[str, ...] = ()


class Template:
    """A parsed Go-style template (module docstring). FormatError for a template it cannot read."""

    FUNCTIONS = ("json", "index", "join", "upper", "lower", "title", "len", "println", "print", "split")

    def __init__(self, source: str):
        self.source = source
        pieces: list[tuple[str, str]] = []
        position = 0
        for match in _TOKEN.finditer(source):
            text = source[position:match.start()]
            if match.group(1):
                text = text.rstrip()
            if pieces and pieces[-1][0] == "trim":
                text = text.lstrip()
                pieces.pop()
            pieces.append(("text", text))
            pieces.append(("action", match.group(2).strip()))
            if match.group(3):
                pieces.append(("trim", ""))
            position = match.end()
        tail = source[position:]
        if pieces and pieces[-1][0] == "trim":
            tail = tail.lstrip()
            pieces.pop()
        if "{{" in tail:
            raise FormatError(f"template {source!r}: an action is not closed with }}}}")
        pieces.append(("text", tail))
        self.nodes, rest = self._parse(pieces, 0, ())
        if rest != len(pieces):
            raise FormatError(f"template {source!r}: {{{{end}}}} without {{{{if}}}} or {{{{range}}}}")

    def _parse(self, pieces, index: int, closers: tuple[str, ...]) -> tuple[list[_Node], int]:
        nodes: list[_Node] = []
        while index < len(pieces):
            kind, text = pieces[index]
            if kind == "text":
                if text:
                    nodes.append(_Node("text", text))
                index += 1
                continue
            word = text.split(None, 1)[0] if text else ""
            if word in ("end", "else"):
                if not closers:
                    raise FormatError(f"template {self.source!r}: {{{{{word}}}}} without {{{{if}}}} or {{{{range}}}}")
                return nodes, index
            if word in ("if", "range"):
                node = _Node(word, text[len(word):].strip())
                if word == "range":
                    named = _RANGE_VARS.match(text)
                    if named:
                        node.names = tuple(n for n in named.groups()[:2] if n)
                        node.text = named.group(3).strip()
                node.body, index = self._parse(pieces, index + 1, ("end", "else"))
                if index < len(pieces) and pieces[index][1] == "else":
                    node.other, index = self._parse(pieces, index + 1, ("end",))
                if index >= len(pieces) or pieces[index][1] != "end":
                    raise FormatError(f"template {self.source!r}: {{{{{word}}}}} is not closed with {{{{end}}}}")
                nodes.append(node)
                index += 1
                continue
            if not text:
                raise FormatError(f"template {self.source!r}: an empty action {{{{}}}}")
            nodes.append(_Node("action", text))
            index += 1
        if closers:
            raise FormatError(f"template {self.source!r}: {{{{{closers[0]}}}}} is missing")
        return nodes, index

    def render(self, document) -> str:
        """The template applied to ``document``; FormatError naming a missing field or a bad call."""
        out: list[str] = []
        self._run(self.nodes, document, document, {}, out)
        return "".join(out)

    def _run(self, nodes, dot, root, variables, out) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                out.append(go_text(self._pipeline(node.text, dot, root, variables)))
            elif node.kind == "if":
                branch = node.body if _truth(self._pipeline(node.text, dot, root, variables)) else node.other
                self._run(branch or [], dot, root, variables, out)
            else:
                value = self._pipeline(node.text, dot, root, variables)
                if isinstance(value, Mapping):
                    items = [(k, value[k]) for k in sorted(value)]
                elif isinstance(value, (list, tuple)):
                    items = list(enumerate(value))
                elif value in (None, NO_VALUE):
                    items = []
                else:
                    raise FormatError(f"template {self.source!r}: cannot range over {go_text(value)!r}")
                if not items:
                    self._run(node.other or [], dot, root, variables, out)
                for key, item in items:
                    scope = dict(variables)
                    if len(node.names) == 2:
                        scope[node.names[0]], scope[node.names[1]] = key, item
                    elif node.names:
                        scope[node.names[0]] = item
                    self._run(node.body, item, root, scope, out)

    def _pipeline(self, text: str, dot, root, variables):
        value = None
        for i, command in enumerate(self._split(text)):
            value = self._command(command, dot, root, variables, [] if i == 0 else [value])
        return value

    def _split(self, text: str) -> list[list[tuple[str, str]]]:
        commands: list[list[tuple[str, str]]] = [[]]
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _ARG.match(text, position)
            if not match or match.end() == position:
                raise FormatError(f"template {self.source!r}: cannot read {text[position:].strip()!r}")
            string, variable, field, word, number, pipe = match.groups()
            if pipe:
                commands.append([])
            elif string is not None:
                commands[-1].append(("string", json.loads(f'"{string}"')))
            elif variable is not None:
                commands[-1].append(("variable", variable))
            elif field is not None:
                commands[-1].append(("field", field))
            elif word is not None:
                commands[-1].append(("word", word))
            else:
                commands[-1].append(("number", number))
            position = match.end()
        if any(not c for c in commands):
            raise FormatError(f"template {self.source!r}: an empty command in {text!r}")
        return commands

    def _value(self, kind: str, text: str, dot, root, variables):
        if kind in ("string",):
            return text
        if kind == "number":
            return int(text)
        if kind == "variable":
            name, _, rest = text[1:].partition(".")
            if name == "":
                base = root
            elif name in variables:
                base = variables[name]
            else:
                raise FormatError(f"template {self.source!r}: undefined variable ${name}")
            return self._field(base, rest.split(".") if rest else [], False)
        if kind == "field":
            parts = [p for p in text.split(".") if p]
            return self._field(dot, parts, dot is root)
        if kind == "word" and text in ("true", "false"):
            return text == "true"
        if kind == "word" and text == "nil":
            return None
        raise FormatError(f"template {self.source!r}: {text!r} is not a value")

    def _field(self, value, parts: list[str], top: bool):
        for i, part in enumerate(parts):
            if isinstance(value, Mapping):
                if part not in value:
                    if top and i == 0:
                        fields = ", ".join(sorted(value))
                        raise FormatError(f"template {self.source!r}: no field {part!r} (fields: {fields})")
                    return NO_VALUE
                value = value[part]
            elif value in (None, NO_VALUE):
                return NO_VALUE
            else:
                raise FormatError(f"template {self.source!r}: {go_text(value)!r} has no field {part!r}")
        return value

    def _command(self, command, dot, root, variables, piped: list):
        kind, text = command[0]
        if kind != "word" or text in ("true", "false", "nil"):
            if len(command) > 1 or piped:
                raise FormatError(f"template {self.source!r}: {text!r} is not a function")
            return self._value(kind, text, dot, root, variables)
        if text not in self.FUNCTIONS:
            raise FormatError(f"template {self.source!r}: function {text!r} not defined "
                              f"(known: {', '.join(self.FUNCTIONS)})")
        args = [self._value(k, t, dot, root, variables) for k, t in command[1:]] + piped
        return _call(self.source, text, args)


def _call(source: str, name: str, args: list):
    def need(count: int) -> None:
        if len(args) != count:
            raise FormatError(f"template {source!r}: {name} takes {count} argument(s), got {len(args)}")

    if name == "json":
        need(1)
        return json.dumps(None if args[0] == NO_VALUE else args[0], separators=(",", ":"))
    if name == "index":
        if len(args) < 2:
            raise FormatError(f"template {source!r}: index takes a value and at least one key")
        value = args[0]
        for key in args[1:]:
            if isinstance(value, Mapping):
                value = value.get(key, NO_VALUE)
            elif isinstance(value, (list, tuple)) and isinstance(key, int):
                if not 0 <= key < len(value):
                    raise FormatError(f"template {source!r}: index {key} out of range")
                value = value[key]
            else:
                return NO_VALUE
        return value
    if name == "join":
        need(2)
        return str(args[1]).join(go_text(v) for v in (args[0] or ()))
    if name == "split":
        need(2)
        return str(args[0]).split(str(args[1]))
    if name in ("upper", "lower", "title"):
        need(1)
        text = go_text(args[0])
        return text.upper() if name == "upper" else text.lower() if name == "lower" else text.title()
    if name == "len":
        need(1)
        try:
            return len(args[0])
        except TypeError:
            raise FormatError(f"template {source!r}: len of {go_text(args[0])!r}") from None
    if name == "println":
        return " ".join(go_text(a) for a in args) + "\n"
    return "".join(go_text(a) for a in args)  # print


# -- output -----------------------------------------------------------------------------------------------------


def header_of(cell: str, headers: Mapping[str, str]) -> str:
    """A table column's header: the command's name for the cell's field, else the field in capitals with
    words apart (``{{.NetworkID}}`` -> ``NETWORK ID``, ``{{.State.Status}}`` -> ``STATUS``), else the cell in
    capitals."""
    match = re.fullmatch(r"\s*\{\{\s*\.([A-Za-z_0-9.]+)\s*\}\}\s*", cell)
    if not match:
        return cell.strip().upper()
    field = match.group(1).rsplit(".", 1)[-1]
    if field in headers:
        return headers[field]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", field).upper()


def render(fmt: str | None, documents: Iterable[Mapping], default: str,
           headers: Mapping[str, str] | None = None) -> str:
    """The text ``--format FMT`` prints for ``documents`` (module docstring): ``default`` is the command's
    own ``table ...`` template, used for no format and for ``table``; ``headers`` names its fields' columns.
    No trailing newline; FormatError for a template that cannot be read or applied."""
    documents = list(documents)
    fmt = default if fmt in (None, "", "table") else fmt
    if fmt == "json":
        return "\n".join(json.dumps(d, separators=(",", ":")) for d in documents)
    if fmt.startswith("table"):
        body = fmt[len("table"):].lstrip(" ")
        cells = (body or default[len("table"):].lstrip(" ")).replace("\\t", "\t").split("\t")
        templates = [Template(cell) for cell in cells]
        rows = [[t.render(d).replace("\n", " ") for t in templates] for d in documents]
        return table([header_of(cell, headers or {}) for cell in cells], rows)
    template = Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    return "\n".join(template.render(d) for d in documents)


# -- filters ----------------------------------------------------------------------------------------------------

CONTAINER_FILTERS = ("id", "name", "label", "network", "status")
NETWORK_FILTERS = ("id", "name", "label", "driver", "scope")


def parse_filters(values: Iterable[str], allowed: Iterable[str]) -> dict[str, list[str]]:
    """``--filter`` values (``KEY=VALUE``) -> {key: [values]}; FormatError for a malformed one, a key not
    in ``allowed`` or an unknown status."""
    allowed = tuple(allowed)
    found: dict[str, list[str]] = {}
    for text in values:
        key, equals, value = text.partition("=")
        key = key.strip().lower()
        if not equals:
            raise FormatError(f"bad format of filter {text!r} (expected name=value)")
        if key not in allowed:
            raise FormatError(f"invalid filter {key!r} (known: {', '.join(allowed)})")
        if key == "status" and value not in STATUSES:
            raise FormatError(f"invalid filter 'status={value}' (statuses: {', '.join(STATUSES)})")
        found.setdefault(key, []).append(value)
    return found


def _name_matches(pattern: str, name: str) -> bool:
    try:
        return bool(re.search(pattern, name) or re.search(pattern, "/" + name))
    except re.error:
        return pattern in name


def _labels(document: Mapping) -> Mapping:
    config = document.get("Config")
    labels = config.get("Labels") if isinstance(config, Mapping) else None
    return labels if isinstance(labels, Mapping) else document.get("Labels") or {}


def _networks(document: Mapping) -> list[tuple[str, str]]:
    settings = document.get("NetworkSettings") or {}
    return [(name, str((entry or {}).get("NetworkID", ""))) for name, entry in (settings.get("Networks") or {}).items()]


def _status(document: Mapping) -> str:
    state = document.get("State")
    return str(state.get("Status", "")) if isinstance(state, Mapping) else str(state or "")


def matches(document: Mapping, filters: Mapping[str, list[str]]) -> bool:
    """Whether an inspect document (a container's or a network's) passes ``filters`` (``parse_filters``)."""
    name = str(document.get("Name", "")).lstrip("/")
    checks = {
        "id": lambda v: str(document.get("Id", "")).startswith(v),
        "name": lambda v: _name_matches(v, name),
        "label": lambda v: (v.partition("=")[0] in _labels(document)) and (
            "=" not in v or str(_labels(document)[v.partition("=")[0]]) == v.partition("=")[2]),
        "network": lambda v: any(v == n or (len(v) >= 1 and i.startswith(v)) for n, i in _networks(document)),
        "status": lambda v: _status(document) == v,
        "driver": lambda v: document.get("Driver") == v,
        "scope": lambda v: document.get("Scope") == v,
    }
    return all(any(checks[key](value) for value in values) for key, values in filters.items())


def select(documents: Iterable[Mapping], filters: Mapping[str, list[str]]) -> list[Mapping]:
    """The documents that pass ``filters``, in their order."""
    return [d for d in documents if matches(d, filters)]
