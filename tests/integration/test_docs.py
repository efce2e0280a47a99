"""Every Python block of the documentation runs as it stands, and the site is complete.

The documentation is README.md and the pages under docs/. A fenced block whose
info string is ``python`` is a complete program: it runs in a fresh namespace and
passes ``mypy --strict``. A block that is deliberately a fragment says so where a
reader sees it, in its title: ```` ```python title="Fragment: ..." ````. Fragments
are rare; they are counted below.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import pipeflow.connectors
import pipeflow.monitoring
import pipeflow.streams
import pipeflow.testing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

#: A fenced block whose info string starts with ``py``, up to its closing fence.
FENCE = re.compile(r"^```(py[^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FRAGMENT = re.compile(r'^python title="Fragment: [^"]+"$')


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    info: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The Python blocks of the page at ``path``, with the line their code starts on."""
    text = path.read_text(encoding="utf-8")
    return [
        Block(path, text.count("\n", 0, m.start(2)) + 1, m.group(1), m.group(2))
        for m in FENCE.finditer(text)
    ]


BLOCKS = [block for page in PAGES for block in python_blocks(page)]
PROGRAMS = [block for block in BLOCKS if block.info == "python"]
FRAGMENTS = [block for block in BLOCKS if FRAGMENT.match(block.info)]


def test_every_python_block_is_a_program_or_a_marked_fragment() -> None:
    """No block escapes the runner through an unusual info string (``py``, ``python3``)."""
    odd = [b.id for b in BLOCKS if b not in PROGRAMS and b not in FRAGMENTS]
    assert [] == odd


def test_fragments_are_rare() -> None:
    """Almost every block is a complete program."""
    assert len(FRAGMENTS) <= 2
    assert len(PROGRAMS) >= 30


@pytest.mark.parametrize("block", PROGRAMS, ids=[b.id for b in PROGRAMS])
def test_block_runs(
    block: Block, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A documentation example runs without error in a fresh namespace, as a script.

    A Kafka example reads the broker's address from ``KAFKA_BOOTSTRAP``: the test's broker.
    """
    if "KAFKA_BOOTSTRAP" in block.code:
        monkeypatch.setenv("KAFKA_BOOTSTRAP", request.getfixturevalue("kafka_bootstrap"))
    # Padded so that tracebacks point at the block's own lines in its page.
    source = "\n" * (block.line - 1) + block.code
    exec(compile(source, str(block.path), "exec"), {"__name__": "__main__"})


def test_async_examples_run_their_code() -> None:
    """A block that defines async code also runs it, so its assertions are checked."""
    lazy = [b.id for b in PROGRAMS if "async def" in b.code and "asyncio.run(" not in b.code]
    assert [] == lazy


def test_blocks_type_check(tmp_path: Path) -> None:
    """Users copy these examples into code checked with ``mypy --strict``: they pass it.

    mypy runs in a process of its own: loaded here, its data would stay in memory
    and make every later ``gc.collect()`` of the suite slow.
    """
    pytest.importorskip("mypy")
    for i, block in enumerate(PROGRAMS):
        (tmp_path / f"block_{i}_line_{block.line}.py").write_text(block.code, encoding="utf-8")
    cache = tmp_path / ".mypy_cache"
    args = ["-m", "mypy", "--strict", "--cache-dir", str(cache), str(tmp_path)]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    assert 0 == done.returncode, done.stdout + done.stderr


def documented_objects() -> set[str]:
    """The objects the API reference renders, from its ``::: path`` lines."""
    found: set[str] = set()
    for page in sorted((DOCS / "reference").glob("*.md")):
        found.update(re.findall(r"^::: (\S+)$", page.read_text(encoding="utf-8"), re.MULTILINE))
    return found


@pytest.mark.parametrize(
    "module",
    [pipeflow.streams, pipeflow.monitoring, pipeflow.testing, pipeflow.connectors],
    ids=lambda m: m.__name__,
)
def test_reference_covers_all_public_names(module: ModuleType) -> None:
    """Every name in a public module's __all__ has an entry in the API reference."""
    documented = documented_objects()
    missing = [name for name in module.__all__ if f"{module.__name__}.{name}" not in documented]
    assert [] == missing


SEED_APIS = [
    "pipeflow.streams.StreamPipe",
    "pipeflow.streams.WindowedStreamPipe",
    "pipeflow.streams.BatchStreamPipe",
    "pipeflow.streams.BackpressureConfig",
    "pipeflow.streams.StreamError",
    "pipeflow.monitoring.StreamMonitor",
]


@pytest.mark.parametrize("path", SEED_APIS)
def test_each_seed_api_has_a_page_of_its_own(path: str) -> None:
    """The classes of the user documentation's samples each head a reference page."""
    name = path.rsplit(".", 1)[1]
    page = DOCS / "reference" / (re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower() + ".md")
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# {name}\n")
    assert f"\n::: {path}\n" in text
