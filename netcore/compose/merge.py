"""Several ``-f`` files merged as Compose merges them (compose-spec 13-merge.md, compose-go ``override``), pure.

Each later file is laid over what the earlier ones made: mappings merge key by key, lists are appended,
a plain value replaces the earlier one, and ``null`` keeps it. Compose's exceptions, kept here:

- a service's ``command``, ``entrypoint`` and ``healthcheck.test`` are replaced, never appended;
- a service's ``networks`` and ``depends_on`` are merged as mappings (a list becomes a mapping first, a
  ``depends_on`` entry with ``condition: service_started``, ``required: true``);
- ``dns``, ``dns_search``, ``dns_opt``, ``environment``, ``labels``, ``sysctls``, ``tmpfs``, ... are merged as
  lists (a mapping becomes ``KEY=VALUE`` items first), ``extra_hosts`` without repeating an entry;
- ``networks.*.ipam.config``: the later file's entries, each merged with an earlier one of the same
  subnet;
- a value tagged ``!reset`` removes what the earlier files said; one tagged ``!override`` replaces it whole.

Then, as Compose does after every file (``EnforceUnicity``), lists whose items are keyed keep one item
per key, the last one written, where the first one was: ``ports`` (by host IP, host port, container port
and protocol), ``dns``, ``dns_search``, ``links``, network ``aliases``, ``labels``, ``environment``, ...

Positions travel with the values, so an error about a merged value names the file and line it came from.
"""

from __future__ import annotations

from netcore.compose.document import OVERRIDE_TAG, RESET_TAG, Document
from netcore.compose.errors import Location, Path, matches

_S = ("services", "*")
_REPLACED = ((*_S, "command"), (*_S, "entrypoint"), (*_S, "healthcheck", "test"))
_AS_MAPPING = {(*_S, "networks"): None,
               (*_S, "depends_on"): {"condition": "service_started", "required": True}}
_AS_SEQUENCE = (
    ("networks", "*", "labels"), ("volumes", "*", "labels"),
    *((*_S, key) for key in ("annotations", "dns", "dns_opt", "dns_search", "env_file", "label_file",
                             "environment", "labels", "sysctls", "tmpfs")),
    (*_S, "build", "args"), (*_S, "build", "additional_contexts"), (*_S, "build", "labels"),
    (*_S, "deploy", "labels"),
)
_EXTRA_HOSTS = ((*_S, "extra_hosts"), (*_S, "build", "extra_hosts"))
_IPAM_CONFIG = ("networks", "*", "ipam", "config")
_BUILD = (*_S, "build")

_BY_KEY = (  # compose-go override/uncity.go keyValueIndexer: one item per KEY of KEY=VALUE
    ("networks", "*", "labels"), ("networks", "*", "ipam", "options"),
    *((*_S, key) for key in ("annotations", "cap_add", "cap_drop", "dns", "dns_opt", "dns_search", "environment",
                             "labels", "links", "profiles", "sysctls", "tmpfs")),
    (*_S, "deploy", "labels"), (*_S, "networks", "*", "aliases"), (*_S, "networks", "*", "link_local_ips"),
)
_PORTS = (*_S, "ports")


def _port_key(item) -> str:
    """compose-go's portIndexer: the short syntax as written, the long one as HOST_IP:PUBLISHED:TARGET/PROTO."""
    if isinstance(item, dict):
        return (f"{item.get('host_ip', '0.0.0.0')}:{item.get('published', '')}:{item.get('target')}"
                f"/{item.get('protocol', 'tcp')}")
    return str(item)


def _value_key(item) -> str:
    return str(item).partition("=")[0] if isinstance(item, str) else repr(item)


def _to_sequence(value) -> tuple[list, dict]:
    """A mapping as sorted ``KEY=VALUE`` items (``KEY`` for null) -> (items, {new index: old key or index})."""
    if isinstance(value, list):
        return list(value), {i: i for i in range(len(value))}
    if isinstance(value, str):
        return [value], {0: ()}
    if not isinstance(value, dict):
        return [], {}
    items = []
    for key, item in value.items():
        if item is None:
            items.append((key, key))
        elif isinstance(item, list):
            items.extend((f"{key}={v}", key) for v in item)
        else:
            items.append((f"{key}={_scalar_text(item)}", key))
    items.sort(key=lambda pair: pair[0])
    return [text for text, _ in items], {i: key for i, (_, key) in enumerate(items)}


def _scalar_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _to_mapping(value, default) -> tuple[dict, dict]:
    """A list of names as a mapping (each to a copy of ``default``) -> (mapping, {new key: old index})."""
    if isinstance(value, dict):
        return dict(value), {k: k for k in value}
    if isinstance(value, list):
        return ({str(name): (dict(default) if default is not None else None) for name in value},
                {str(name): i for i, name in enumerate(value)})
    return {}, {}


class _Merger:
    def __init__(self, base: Document, over: Document):
        self.positions = dict(base.positions)
        self.tags = {path: tag for path, tag in base.tags.items()}
        self.over = dict(over.positions)
        self.over_tags = over.tags
        self.over_doc = over

    @staticmethod
    def _rekey(positions: dict, path: Path, moves: dict) -> None:
        """Positions under ``path`` move from ``path + (old,)`` to ``path + (new,)`` for each new: old."""
        if not moves:
            return
        depth = len(path)
        moved = {}
        for key in [k for k in positions if len(k) > depth and k[:depth] == path]:
            old = key[depth]
            moved.setdefault(old, []).append(key)
        located = {}
        for new, old in moves.items():
            if old == () and path in positions:  # a plain value that became the list's one item
                located[(*path, new)] = positions[path]
            for key in moved.get(old, ()):
                located[(*path, new, *key[depth + 1:])] = positions[key]
        for keys in moved.values():
            for key in keys:
                del positions[key]
        positions.update(located)

    def drop(self, path: Path) -> None:
        depth = len(path)
        for key in [k for k in self.positions if k[:depth] == path]:
            del self.positions[key]

    def take(self, source: Path, target: Path) -> None:
        """The override's positions under ``source`` become the merged ones under ``target``."""
        depth = len(source)
        for key, location in self.over.items():
            if key[:depth] == source:
                self.positions[(*target, *key[depth:])] = location

    def replace(self, path: Path, value):
        self.drop(path)
        self.take(path, path)
        return value

    def mapping(self, base: dict, over: dict, path: Path) -> dict:
        merged = dict(base)
        for key, value in over.items():
            child = (*path, key)
            tag = self.over_tags.get(child)
            if tag == RESET_TAG:
                merged.pop(key, None)
                self.drop(child)
            elif key not in merged or tag == OVERRIDE_TAG:
                merged[key] = self.replace(child, value)
            else:
                merged[key] = self.value(merged[key], value, child)
        return merged

    def value(self, base, over, path: Path):
        if any(matches(p, path) for p in _REPLACED):
            return self.replace(path, over)
        default = next((d for p, d in _AS_MAPPING.items() if matches(p, path)), "none")
        if default != "none":
            base_map, base_moves = _to_mapping(base, default)
            over_map, over_moves = _to_mapping(over, default)
            self._rekey(self.positions, path, base_moves)
            self._rekey(self.over, path, over_moves)
            return self.mapping(base_map, over_map, path)
        if any(matches(p, path) for p in _AS_SEQUENCE + _EXTRA_HOSTS):
            base_seq, base_moves = _to_sequence(base)
            over_seq, over_moves = _to_sequence(over)
            self._rekey(self.positions, path, base_moves)
            self._rekey(self.over, path, over_moves)
            if any(matches(p, path) for p in _EXTRA_HOSTS):
                keep = [i for i, item in enumerate(over_seq) if item not in base_seq]
                self._rekey(self.over, path, {n: i for n, i in enumerate(keep)})
                over_seq = [over_seq[i] for i in keep]
            return self.append(base_seq, over_seq, path)
        if matches(_IPAM_CONFIG, path) and isinstance(base, list) and isinstance(over, list):
            return self.ipam(base, over, path)
        if matches(_BUILD, path):
            base = {"context": base} if isinstance(base, str) else base
            over = {"context": over} if isinstance(over, str) else over
        if over is None:
            return base
        if isinstance(base, dict) and isinstance(over, dict):
            return self.mapping(base, over, path)
        if isinstance(base, list) and isinstance(over, list):
            return self.append(base, over, path)
        if isinstance(base, (dict, list)):  # a plain value may become anything (compose-go MergeYaml)
            raise self.over_doc.error(path, f"cannot override a {_shape(base)} with a {_shape(over)}")
        return self.replace(path, over)

    def append(self, base: list, over: list, path: Path) -> list:
        for index in range(len(over)):
            self.take((*path, index), (*path, len(base) + index))
        return base + over

    def ipam(self, base: list, over: list, path: Path) -> list:
        by_subnet = {item.get("subnet"): (i, item) for i, item in enumerate(base) if isinstance(item, dict)}
        merged: list = []
        seen: dict = {}
        base_positions = dict(self.positions)
        self.drop(path)
        for index, item in enumerate(over):
            subnet = item.get("subnet") if isinstance(item, dict) else None
            if subnet in seen:
                continue
            seen[subnet] = len(merged)
            target = (*path, len(merged))
            if subnet in by_subnet:
                old, earlier = by_subnet[subnet]
                for key, location in base_positions.items():
                    if key[:len(path) + 1] == (*path, old):
                        self.positions[(*target, *key[len(path) + 1:])] = location
                self._rekey(self.over, path, {len(merged): index})
                item = self.mapping(dict(earlier), dict(item), target)
            else:
                self.take((*path, index), target)
            merged.append(item)
        return merged


def _shape(value) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "plain value"


def merge(base: Document, over: Document) -> Document:
    """``over`` laid over ``base`` by Compose's rules (module docstring), then made unique by key.
    ComposeError ``FILE:LINE: PATH: cannot override a list with a mapping`` where shapes clash."""
    merger = _Merger(base, over)
    data = merger.mapping(base.data, over.data, ())
    merged = Document(data, merger.positions, {**base.tags, **over.tags}, over.file)
    return unique(merged)


def unique(document: Document) -> Document:
    """One item per key in Compose's keyed lists (module docstring): the last value, at the first place."""
    positions = dict(document.positions)

    def walk(value, path: Path):
        if isinstance(value, dict):
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if not isinstance(value, list):
            return value
        key_of = _port_key if matches(_PORTS, path) else _value_key if any(matches(p, path) for p in _BY_KEY) \
            else None
        if key_of is None:
            return [walk(item, (*path, index)) for index, item in enumerate(value)]
        kept: list = []
        places: dict[str, int] = {}
        moves: dict[int, int] = {}
        for index, item in enumerate(value):
            key = key_of(item)
            if key in places:
                kept[places[key]] = item
                moves[places[key]] = index
            else:
                places[key] = len(kept)
                moves[len(kept)] = index
                kept.append(item)
        if len(kept) != len(value):
            first: dict[int, Location] = {new: positions.get((*path, min(i for i, it in enumerate(value)
                                                                         if key_of(it) == key_of(kept[new]))))
                                          for new in range(len(kept))}
            _Merger._rekey(positions, path, moves)
            for new, location in first.items():
                if location is not None:
                    positions[(*path, new)] = location
        return kept

    data = walk(document.data, ())
    return Document(data, positions, document.tags, document.file)
