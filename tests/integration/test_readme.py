"""Every ```python block of README.md runs as it stands, and the reference is complete."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import pipeflow.monitoring
import pipeflow.streams
import pipeflow.testing

README = Path(__file__).resolve().parents[2] / "README.md"

#: A fenced block whose info string is exactly ``python``, up to its closing fence.
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    line: int
    code: str


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, with the line their code starts on."""
    return [
        Block(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in PYTHON_BLOCK.finditer(text)
    ]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_examples() -> None:
    """The README shows a good number of runnable examples."""
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line-{b.line}" for b in BLOCKS])
def test_block_runs(block: Block) -> None:
    """A README example runs without error in a fresh namespace."""
    # Padded so that tracebacks point at the block's own lines in README.md.
    source = "\n" * (block.line - 1) + block.code
    exec(compile(source, str(README), "exec"), {"__name__": "__readme__"})


def test_async_examples_run_their_code() -> None:
    """A block that defines async code also runs it, so its assertions are checked."""
    lazy = [b.line for b in BLOCKS if "async def" in b.code and "asyncio.run(" not in b.code]
    assert lazy == []


def reference(text: str) -> str:
    """The text of the API reference section."""
    start = text.index("\n## API reference\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


@pytest.mark.parametrize(
    "module",
    [pipeflow.streams, pipeflow.monitoring, pipeflow.testing],
    ids=lambda m: m.__name__,
)
def test_reference_covers_all_public_names(module: ModuleType) -> None:
    """Every name in a public module's __all__ has an entry in the API reference."""
    text = reference(README.read_text(encoding="utf-8"))
    assert f"### `{module.__name__}`" in text
    missing = [name for name in module.__all__ if not re.search(rf"\*\*`{name}\b", text)]
    assert missing == []


def test_blocks_type_check(tmp_path: Path) -> None:
    """Users copy these examples into code checked with ``mypy --strict``: they pass it.

    mypy runs in a process of its own: loaded here, its data would stay in memory
    and make every later ``gc.collect()`` of the suite slow.
    """
    pytest.importorskip("mypy")
    for i, block in enumerate(BLOCKS):
        (tmp_path / f"readme_line_{block.line}_{i}.py").write_text(block.code, encoding="utf-8")
    cache = tmp_path / ".mypy_cache"
    args = ["-m", "mypy", "--strict", "--cache-dir", str(cache), str(tmp_path)]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
