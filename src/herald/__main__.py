"""`python -m herald ...`: the same as the `herald` command."""

from __future__ import annotations

from herald.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
