"""``python -m conv``: rerun the article's experiment on this machine (see conv.bench)."""
from .bench.cli import main

raise SystemExit(main())
