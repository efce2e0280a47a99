"""README.md is the front door: short, quick start first, and every link leads somewhere.

Its Python blocks run, and pass ``mypy --strict``, with those of the documentation
pages in ``test_docs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

#: A Markdown link or image target: ``[text](target)``.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def sections(text: str) -> list[str]:
    """The titles of the ``##`` sections, in order."""
    return re.findall(r"^## (.+)$", text, re.MULTILINE)


def test_readme_is_short() -> None:
    """The README introduces, with one example of the library and one per connector;
    the documentation pages hold the rest."""
    assert len(TEXT.encode("utf-8")) < 14 * 1024


def test_quick_start_comes_first() -> None:
    """The first section is the quick start: `make demo`, then `make test`."""
    assert "Quick start" == sections(TEXT)[0]
    start = TEXT.index("## Quick start")
    assert "```sh\nmake demo\nmake test\n```" in TEXT[start : TEXT.index("\n## ", start + 1)]


def test_install_names_the_distribution() -> None:
    """pip installs the distribution `pipeflow-streams`, extras included."""
    assert "pip install pipeflow-streams\n" in TEXT
    assert "pip install 'pipeflow-streams[prometheus]'" in TEXT
    assert "Python 3.11" in TEXT


def test_readme_has_a_complete_example() -> None:
    """One runnable program shows the library at work (test_docs.py runs it)."""
    assert 1 <= TEXT.count("```python\n")
    assert "asyncio.run(main())" in TEXT


RELATIVE = sorted({t for t in LINK.findall(TEXT) if not re.match(r"[a-z]+://", t)})


def test_readme_links_into_the_documentation() -> None:
    """The README sends readers on to the pages under docs/."""
    assert 10 <= sum(t.startswith("docs/") for t in RELATIVE)


@pytest.mark.parametrize("target", RELATIVE)
def test_relative_links_resolve(target: str) -> None:
    """Links into the repository point at files that exist, so they work on GitHub."""
    path = target.split("#", 1)[0]
    assert (ROOT / path).exists(), target


def test_every_documentation_section_is_linked() -> None:
    """The README links the concept pages and how-to guides, each one."""
    pages = sorted((ROOT / "docs").glob("*/*.md"))
    linked = set(LINK.findall(TEXT))
    missing = [
        str(p.relative_to(ROOT))
        for p in pages
        if p.parent.name in {"concepts", "how-to"} and str(p.relative_to(ROOT)) not in linked
    ]
    assert [] == missing
