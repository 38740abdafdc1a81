"""``python -m tickets_core.sweep``."""

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing the sweep: one line, not a traceback
    import sys

    print("stopped before the sweep started (nothing was run)", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
