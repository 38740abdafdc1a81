"""``python -m tickets_core.sweep``."""

from .cli import main

raise SystemExit(main())
