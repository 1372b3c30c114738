"""python -m tinyq <command> ...: the same as the `tinyq` script."""
from .cli import main

raise SystemExit(main())
