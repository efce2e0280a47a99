"""The public modules export exactly their __all__, re-exported from private modules."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import pipeflow
import pipeflow.connectors
import pipeflow.monitoring
import pipeflow.streams
import pipeflow.testing

PUBLIC_MODULES = [pipeflow.streams, pipeflow.monitoring, pipeflow.testing, pipeflow.connectors]
IDS = [m.__name__ for m in PUBLIC_MODULES]


def private_modules() -> list[ModuleType]:
    """Every module of the package below a private (underscore) package."""
    found = []
    for info in pkgutil.walk_packages(pipeflow.__path__, prefix="pipeflow."):
        if info.name.startswith("pipeflow._"):
            found.append(importlib.import_module(info.name))
    return found


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=IDS)
def test_all_names_exist(module: ModuleType) -> None:
    """Every name in __all__ is an attribute of the module, listed once."""
    names = module.__all__
    assert len(set(names)) == len(names)
    assert [] == [name for name in names if not hasattr(module, name)]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=IDS)
def test_classes_and_functions_are_defined_in_private_modules(module: ModuleType) -> None:
    """Exported classes and functions are defined in a private pipeflow module."""
    misplaced = []
    for name in module.__all__:
        obj = getattr(module, name)
        defined = inspect.isclass(obj) or inspect.isfunction(obj)
        if defined and not obj.__module__.startswith("pipeflow._"):
            misplaced.append((name, obj.__module__))
    assert [] == misplaced


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=IDS)
def test_every_export_is_defined_in_a_private_module(module: ModuleType) -> None:
    """Every exported object (constants and aliases too) comes from a private module."""
    privates = private_modules()
    orphans = [
        name
        for name in module.__all__
        if not any(getattr(p, name, None) is getattr(module, name) for p in privates)
    ]
    assert [] == orphans


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=IDS)
def test_public_attributes_are_all_in_all(module: ModuleType) -> None:
    """Every public attribute of the module is listed in __all__ (nothing leaks)."""
    public = {name for name in vars(module) if not name.startswith("_")}
    assert set(module.__all__) == public


def test_seed_names_import() -> None:
    """The names the documentation starts from import from the public modules."""
    from pipeflow.monitoring import StreamMonitor
    from pipeflow.streams import BackpressureConfig, StreamError, StreamPipe

    assert all(inspect.isclass(c) for c in (StreamPipe, BackpressureConfig, StreamError))
    assert inspect.isclass(StreamMonitor)


def test_monitoring_surface() -> None:
    """pipeflow.monitoring offers the monitor, its records, and its outputs."""
    assert [
        "Bottleneck",
        "ConsoleReporter",
        "PrometheusCollector",
        "StageMetrics",
        "StreamMetrics",
        "StreamMonitor",
        "print_report",
    ] == sorted(pipeflow.monitoring.__all__)


def test_version_is_a_string() -> None:
    """pipeflow.__version__ is a dotted version string."""
    assert isinstance(pipeflow.__version__, str)
    assert all(part.isdigit() for part in pipeflow.__version__.split("."))
