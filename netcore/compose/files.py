"""Which Compose files, which environment, which project: found as ``docker compose`` finds them.

The rules (docker/compose ``cmd/compose/compose.go`` ``toProjectOptions``, compose-go ``cli/options.go``):

- **Files**: every ``-f`` in order (``-`` is standard input); else ``COMPOSE_FILE`` (paths separated by
  ``COMPOSE_PATH_SEPARATOR``, default ``:``); else the first of ``compose.yaml``, ``compose.yml``,
  ``docker-compose.yml``, ``docker-compose.yaml`` in the working directory, then in each parent, with the
  first of ``compose.override.yml``, ``compose.override.yaml``, ``docker-compose.override.yml``,
  ``docker-compose.override.yaml`` beside it (a warning when several names are present).
- **Project directory**: ``--project-directory``, else the directory of the first file (not ``-``),
  else the current one.
- **Environment**: the process environment wins; then ``--env-file`` files (later ones over earlier
  ones) or, without them, ``.env`` in the current directory and then in the project directory (unless
  ``COMPOSE_DISABLE_ENV_FILE`` is true), each adding only what is not set yet. ``COMPOSE_FILE`` and
  ``COMPOSE_PROJECT_NAME`` may come from ``.env``.
- **Project name** (``project_name``): ``-p``, else ``COMPOSE_PROJECT_NAME``, else the files' top-level
  ``name:`` (the last one set, interpolated, then normalised), else the project directory's name
  normalised: lower case, only ``[a-z0-9_-]`` kept, leading ``_`` and ``-`` dropped. ``-p`` and
  ``COMPOSE_PROJECT_NAME`` must already be normal, else they are refused.

This module reads the file system and standard input (``stdin`` is injected); everything after it is pure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from netcore.compose.envfile import parse_env
from netcore.compose.errors import ComposeError

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")
STDIN = "-"


@dataclass(frozen=True)
class ProjectOptions:
    """What the user gave: ``-f`` files in order, ``-p``, ``--project-directory``, ``--env-file`` files."""

    files: tuple[str, ...] = ()
    project_name: str | None = None
    project_directory: str | None = None
    env_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceFile:
    """One Compose file: ``path`` absolute (or ``-``), ``display`` as messages show it, its ``text``."""

    path: str
    display: str
    text: str


@dataclass(frozen=True)
class ProjectSource:
    """The files to load, in order, the project directory, the environment interpolation reads, the
    project name given by ``-p``/``COMPOSE_PROJECT_NAME`` (None if neither), and the warnings met."""

    files: tuple[SourceFile, ...]
    working_dir: str
    environment: dict[str, str]
    given_name: str | None
    warnings: tuple[str, ...] = field(default=())


def normalize_project_name(name: str) -> str:
    """Compose's NormalizeProjectName: lower case, only ``[a-z0-9_-]`` kept, leading ``_``/``-`` dropped."""
    return "".join(re.findall(r"[a-z0-9_-]", name.lower())).lstrip("_-")


def check_project_name(name: str, source: str) -> str:
    """``name`` if it is already normal (``-p``, ``COMPOSE_PROJECT_NAME``); ComposeError otherwise."""
    if not name or normalize_project_name(name) != name:
        raise ComposeError(f"invalid project name {name!r} ({source}): use only lowercase letters, digits, '-' "
                           "and '_', starting with a letter or digit")
    return name


def project_name(given: str | None, from_files: str | None, working_dir: str) -> str:
    """The project's name by Compose's precedence (module docstring); ComposeError if it comes out empty."""
    if given:
        return given
    name = normalize_project_name(from_files or "") or normalize_project_name(os.path.basename(working_dir))
    if not name:
        raise ComposeError(f"no project name: the directory name {os.path.basename(working_dir)!r} has no "
                           "letter or digit; give one with -p NAME or a top-level name:")
    return name


def _display(path: str, cwd: str) -> str:
    relative = os.path.relpath(path, cwd)
    return path if relative.startswith("..") else relative


def _read(path: str, cwd: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except FileNotFoundError:
        raise ComposeError(f"{what} {_display(path, cwd)} not found") from None
    except IsADirectoryError:
        raise ComposeError(f"{what} {_display(path, cwd)} is a directory") from None
    except UnicodeDecodeError as err:
        raise ComposeError(f"{what} {_display(path, cwd)} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ComposeError(f"cannot read {what} {_display(path, cwd)}: {err.strerror}") from None


def _true(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "t", "true")


def _find_default(directory: str, warnings: list[str]) -> list[str]:
    """The default file (and its override) in ``directory`` or its nearest parent that has one; [] if none."""
    while True:
        found = [os.path.join(directory, n) for n in DEFAULT_FILES if os.path.isfile(os.path.join(directory, n))]
        if found:
            if len(found) > 1:
                warnings.append(f"found several Compose files ({', '.join(os.path.basename(f) for f in found)}): "
                                f"using {os.path.basename(found[0])}")
            overrides = [os.path.join(directory, n) for n in OVERRIDE_FILES
                         if os.path.isfile(os.path.join(directory, n))]
            if len(overrides) > 1:
                warnings.append(f"found several override files ({', '.join(os.path.basename(f) for f in overrides)})"
                                f": using {os.path.basename(overrides[0])}")
            return found[:1] + overrides[:1]
        parent = os.path.dirname(directory)
        if parent == directory:
            return []
        directory = parent


def resolve(options: ProjectOptions, cwd: str, environ: Mapping[str, str],
            stdin: Callable[[], str] | None = None) -> ProjectSource:
    """Find the files, read them and the env files, and gather the environment (module docstring).

    ``cwd``: the current directory (absolute); ``environ``: the process environment; ``stdin``: reads
    standard input for ``-f -``. ComposeError for no Compose file, a missing or unreadable file, an env
    file that does not parse, or an invalid ``-p``/``COMPOSE_PROJECT_NAME``.
    """
    warnings: list[str] = []
    environment = dict(environ)
    explicit_dir = os.path.join(cwd, options.project_directory) if options.project_directory else None
    env_files = [os.path.join(cwd, f) for f in options.env_files]
    read_env: set[str] = set()

    def add_env_files(directory: str) -> None:
        paths = env_files or ([] if _true(environment.get("COMPOSE_DISABLE_ENV_FILE")) else
                              [p for p in [os.path.join(directory, ".env")] if os.path.isfile(p)])
        defined: dict[str, str] = {}
        for path in paths:
            if path in read_env:
                continue
            read_env.add(path)
            defined.update(parse_env(_read(path, cwd, "env file"), _display(path, cwd), environment, defined))
        for key, value in defined.items():
            environment.setdefault(key, value)

    first_file = next((f for f in options.files if f != STDIN), None)
    add_env_files(explicit_dir or (os.path.dirname(os.path.join(cwd, first_file)) if first_file else cwd))
    paths = [f if f == STDIN else os.path.join(cwd, f) for f in options.files]
    if not paths and environment.get("COMPOSE_FILE"):
        separator = environment.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        paths = [os.path.join(cwd, f) for f in environment["COMPOSE_FILE"].split(separator) if f]
    if not paths:
        paths = _find_default(explicit_dir or cwd, warnings)
        if not paths:
            raise ComposeError(f"no Compose file found in {explicit_dir or cwd} or its parents "
                               f"({', '.join(DEFAULT_FILES)}); give one with -f FILE")
    first = next((p for p in paths if p != STDIN), None)
    working_dir = os.path.normpath(explicit_dir or (os.path.dirname(first) if first else cwd))
    add_env_files(working_dir)
    files = []
    for path in paths:
        if path == STDIN:
            if stdin is None:
                raise ComposeError("-f -: standard input cannot be read here")
            files.append(SourceFile(STDIN, "(stdin)", stdin()))
        else:
            files.append(SourceFile(os.path.normpath(path), _display(path, cwd), _read(path, cwd, "Compose file")))
    given = None
    if options.project_name is not None:
        given = check_project_name(options.project_name, "-p")
    elif environment.get("COMPOSE_PROJECT_NAME"):
        given = check_project_name(environment["COMPOSE_PROJECT_NAME"], "COMPOSE_PROJECT_NAME")
    return ProjectSource(tuple(files), working_dir, environment, given, tuple(warnings))
