"""The ``pipeflow`` command, from the ``cli`` extra.

``pipeflow run MODULE:ATTR --source URL --sink URL`` runs a pipeline.

- ``_urls``: source and sink URLs parsed into connector specs, and built;
- ``_load``: ``MODULE:ATTR``, the pipeline to run;
- ``_status``: the live status line on a terminal;
- ``_run``: the click command, signals, the summary and the exit code.

This module imports neither click nor rich: without the extra, ``main`` says
what to install in one line.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

INSTALL = "pip install 'pipeflow-streams[cli]'"


def main() -> None:
    """The ``pipeflow`` console script."""
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(
            f"pipeflow: the command needs {exc.name}, which is not installed: {INSTALL}\n"
        )
        sys.exit(1)
    from ._run import cli

    cli(prog_name="pipeflow")
