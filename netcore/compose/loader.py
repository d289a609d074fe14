"""From the command line's options to a ``Project``: the whole of reading Compose files, in Compose's order.

1. find the files, the project directory and the environment (``netcore.compose.files``);
2. parse each file's YAML documents (``document``); read the top-level ``name:`` and choose the project
   name, which interpolation then sees as ``COMPOSE_PROJECT_NAME`` (as compose-go does);
3. per document: interpolate (``interpolate``), resolve ``extends``, keep one item per key in Compose's
   keyed lists, validate against the Compose specification (``schema``), merge over the documents before
   (``merge``);
4. normalise into the project model (``model.normalize``).

``load_source`` does steps 2 to 4 on files already read (pure); ``load`` adds step 1 (the file system).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from netcore.compose.document import Document, parse
from netcore.compose.errors import ComposeError, Location
from netcore.compose.files import ProjectOptions, ProjectSource, SourceFile, project_name, resolve
from netcore.compose.interpolate import InterpolationError, interpolate, substitute
from netcore.compose.merge import merge, unique
from netcore.compose.model import Project, normalize
from netcore.compose.schema import validate

Reader = Callable[[str], str]  # path -> text, for the files ``extends: {file: ...}`` names


def _declared_name(parsed: list[tuple[SourceFile, list[Document]]], lookup) -> str | None:
    """The last non-empty top-level ``name:`` of the files, interpolated (before anything else is)."""
    found = None
    for _, documents in parsed:
        for document in documents:
            raw = document.data.get("name")
            if raw not in (None, ""):
                try:
                    found, _ = substitute(str(raw), lookup)
                except InterpolationError as err:
                    raise document.error(("name",), str(err)) from None
    return found


class _Extends:
    """Resolves ``extends`` in one document's services: the base service, then this one merged over it."""

    def __init__(self, source: SourceFile, lookup, read: Reader | None, warnings: list[str]):
        self.source = source
        self.lookup = lookup
        self.read = read
        self.warnings = warnings
        self.files: dict[str, Document] = {}

    def other(self, path: str, display: str) -> Document:
        if path not in self.files:
            if self.read is None:
                raise ComposeError(f"{display}: cannot read files named by extends here")
            try:
                text = self.read(path)
            except OSError as err:
                raise ComposeError(f"cannot read {display} (named by extends): {err.strerror}") from None
            documents = parse(text, display)
            if not documents:
                raise ComposeError(f"{display} (named by extends) is empty")
            document, notes = interpolate(documents[0], self.lookup)
            self.warnings.extend(notes)
            self.files[path] = document
        return self.files[path]

    def resolve(self, document: Document, directory: str) -> Document:
        services = document.data.get("services")
        if not isinstance(services, dict) or not any(isinstance(s, dict) and "extends" in s
                                                     for s in services.values()):
            return document
        result = document
        for name in list(services):
            result = self.service(result, directory, name, ())
        return result

    def service(self, document: Document, directory: str, name: str, chain: tuple) -> Document:
        spec = document.data["services"].get(name)
        if not isinstance(spec, dict) or "extends" not in spec:
            return document
        key = (document.file, name)
        if key in chain:
            raise document.error(("services", name, "extends"), "extends makes a cycle: " + " -> ".join(
                f"{f}:{s}" for f, s in (*chain, key)))
        extends = spec["extends"]
        base_name = extends if isinstance(extends, str) else extends.get("service")
        base_file = None if isinstance(extends, str) else extends.get("file")
        if base_file:
            path = os.path.normpath(os.path.join(directory, base_file))
            display = os.path.join(os.path.dirname(document.file), base_file) if document.file != "(stdin)" \
                else base_file
            base_doc = self.other(path, os.path.normpath(display))
            base_dir = os.path.dirname(path)
        else:
            base_doc, base_dir = document, directory
        base_services = base_doc.data.get("services") or {}
        if base_name not in base_services:
            raise document.error(("services", name, "extends"), f"cannot extend service {base_name!r}: "
                                                                f"no such service in {base_doc.file}")
        base_doc = self.service(base_doc, base_dir, base_name, (*chain, key))
        if base_doc.file == document.file and not base_file:
            document = base_doc  # the same file: its base service is resolved in place now
            spec = document.data["services"][name]
        base_spec = base_doc.data["services"][base_name] or {}
        prefix = ("services", base_name)
        base_part = Document({"services": {name: base_spec}}, {
            ("services", name, *k[2:]): v for k, v in base_doc.positions.items() if k[:2] == prefix},
            {("services", name, *k[2:]): v for k, v in base_doc.tags.items() if k[:2] == prefix}, base_doc.file)
        own = {k: v for k, v in spec.items() if k != "extends"}
        own_part = Document({"services": {name: own}}, {
            k: v for k, v in document.positions.items() if k[:2] == ("services", name)},
            {k: v for k, v in document.tags.items() if k[:2] == ("services", name)}, document.file)
        merged = merge(base_part, own_part)
        data = {**document.data, "services": {**document.data["services"],
                                               name: merged.data["services"][name]}}
        positions = {k: v for k, v in document.positions.items() if k[:2] != ("services", name)}
        positions.update(merged.positions)
        positions[("services", name)] = document.positions.get(("services", name), positions.get(("services",)))
        return Document(data, positions, document.tags, document.file)


def load_source(source: ProjectSource, read: Reader | None = None) -> Project:
    """The Project that the files of ``source`` describe (module docstring, steps 2 to 4); ``read`` reads
    a file named by ``extends: {file: ...}``. ComposeError with the file, line and key for anything
    refused; the Project's ``warnings`` carry the rest (unset variables, ``version``, ...)."""
    return load_merged(source, read)[0]


def load_merged(source: ProjectSource, read: Reader | None = None) -> tuple[Project, Document]:
    """``load_source``'s Project, and the merged, interpolated document it was read from (what ``compose
    config`` prints)."""
    environment = dict(source.environment)
    parsed = [(f, parse(f.text, f.display)) for f in source.files]
    name = project_name(source.given_name, _declared_name(parsed, environment.get), source.working_dir)
    environment["COMPOSE_PROJECT_NAME"] = name
    warnings = list(source.warnings)
    merged = Document({}, {}, {}, "")
    for file, documents in parsed:
        directory = os.path.dirname(file.path) if file.path != "-" else source.working_dir
        extends = _Extends(file, environment.get, read, warnings)
        for document in documents:
            document, notes = interpolate(document, environment.get)
            warnings.extend(note for note in notes if note not in warnings)
            document = unique(extends.resolve(document, directory))
            validate(document)
            merged = merge(merged, document)
    if not merged.data:
        raise ComposeError(f"{', '.join(f.display for f in source.files)}: empty compose file")
    merged.positions.setdefault((), Location(source.files[0].display, 1))
    project = normalize(merged, name, source.working_dir, tuple(f.path for f in source.files))
    return Project(project.name, project.working_dir, project.config_files, project.networks, project.services,
                   project.not_applied, (*warnings, *project.warnings)), merged


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8-sig") as f:
        return f.read()


def load(options: ProjectOptions, cwd: str, environ: Mapping[str, str],
         stdin: Callable[[], str] | None = None) -> Project:
    """``netcore compose [-f FILE]... [-p NAME] [--project-directory DIR] [--env-file F]``: the Project.

    ``cwd``: the current directory; ``environ``: the process environment; ``stdin`` reads ``-f -``.
    ComposeError (one line) for anything refused; nothing is created or changed by loading."""
    return load_source(resolve(options, cwd, environ, stdin), _read_text)


def load_with_document(options: ProjectOptions, cwd: str, environ: Mapping[str, str],
                       stdin: Callable[[], str] | None = None) -> tuple[Project, Document]:
    """``load``, with the merged document (``load_merged``)."""
    return load_merged(resolve(options, cwd, environ, stdin), _read_text)
