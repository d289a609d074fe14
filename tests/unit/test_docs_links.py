"""Every relative link of README.md and docs/*.md leads somewhere: the file exists, and an #anchor is a heading
of the page it points at, spelled as GitHub spells heading anchors. Pure: it reads the Markdown files only."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# the checkout: the nearest folder above this file with README.md and docs/, wherever it sits under tests/
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "README.md").is_file() and (p / "docs").is_dir())
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: the rendered text (code spans as their text, links as their
    text, emphasis markers dropped), lower case, every character but letters, digits, spaces, ``-`` and
    ``_`` dropped, spaces made ``-``."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of ``page``'s headings, repeats numbered ``-1``, ``-2``, ... as GitHub numbers them."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path):
    """(line number, target) of every link in ``page``'s prose (not in code blocks or code spans); a link's
    text may run over a line's end."""
    text = page.read_text(encoding="utf-8")
    kept = dict(prose_lines(text))
    prose = "\n".join(kept.get(n, "") for n in range(1, text.count("\n") + 2))
    prose = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), prose)  # offsets, and so line numbers, kept
    for match in LINK.finditer(prose):
        yield prose.count("\n", 0, match.start()) + 1, match.group(1)


def broken(page: Path) -> list[str]:
    problems = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not ours to check
            continue
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not goal.exists():
            problems.append(f"{where}: no such file {os.path.relpath(goal, ROOT)}")
        elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
            problems.append(f"{where}: no heading with anchor #{anchor} in {goal.relative_to(ROOT)}")
    return problems


def test_the_pages_are_found():
    assert ROOT / "README.md" in PAGES and len(PAGES) > 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken(page) == []


@pytest.mark.parametrize(("heading", "anchor"), [
    ("The firewall (nftables)", "the-firewall-nftables"),
    ("`ps` STATUS, and repeating a removal that was killed part way",
     "ps-status-and-repeating-a-removal-that-was-killed-part-way"),
    ("`--format` and `--filter`", "--format-and---filter"),
    ("A worked example: `examples/custom-ipam.yaml`", "a-worked-example-examplescustom-ipamyaml"),
    ("dnsd's upstream path", "dnsds-upstream-path"),
    ("Containers' main processes (issue 28)", "containers-main-processes-issue-28"),
])
def test_anchors_are_spelled_as_github_spells_them(heading, anchor):
    assert slug(heading) == anchor
