"""``python -m mtreclib`` is the ``mtrec`` command (the form torchrun can launch)."""

from mtreclib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
