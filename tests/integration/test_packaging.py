"""The built wheel is what users install: it installs into a fresh environment,
carries its licence and type information, and its public modules import."""

from __future__ import annotations

import email
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = ("pipeflow", "pipeflow.streams", "pipeflow.monitoring", "pipeflow.testing")

# Run inside the fresh environment: every public module imports from there (not
# from this checkout), and the installed package is marked as typed.
CHECK = f"""
import importlib, pathlib, sys
for name in {PUBLIC!r}:
    module = importlib.import_module(name)
    assert module.__file__.startswith(sys.prefix), (name, module.__file__)
import pipeflow
assert (pathlib.Path(pipeflow.__file__).parent / "py.typed").is_file()
print(pipeflow.__version__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(out), str(ROOT)], check=True
    )
    (built,) = out.glob("*.whl")
    return built


def test_wheel_metadata_names_the_distribution_and_its_licence(wheel: Path) -> None:
    """The distribution is `pipeflow-streams` (the import name stays `pipeflow`),
    under Apache-2.0 with the licence text inside, and ships `py.typed`."""
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(whl.read(meta_name))
    assert "pipeflow-streams" == meta["Name"]
    assert "Apache-2.0" == meta["License-Expression"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "pipeflow/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]


def test_wheel_installs_into_a_fresh_environment(wheel: Path, tmp_path: Path) -> None:
    """`pip install` of the wheel pulls its dependencies, and the public modules
    import from the installed copy."""
    env = tmp_path / "venv"
    venv.create(env)  # without pip: this environment's pip installs into it
    python = env / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", wheel], check=True)
    done = subprocess.run(
        [str(python), "-I", "-c", CHECK], check=True, capture_output=True, text=True
    )
    import pipeflow

    assert pipeflow.__version__ == done.stdout.strip()
    check = subprocess.run([*pip, "check"], capture_output=True, text=True)
    assert 0 == check.returncode, check.stdout
