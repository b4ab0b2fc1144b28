"""``python -m conv``: rerun the article's experiment on this machine (see conv._experiment)."""
from ._experiment import main

raise SystemExit(main())
