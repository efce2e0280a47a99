"""``python -m pipeflow._cli``: the ``pipeflow`` command."""

from . import main

if __name__ == "__main__":
    main()
