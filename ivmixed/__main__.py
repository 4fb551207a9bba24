"""``python -m ivmixed`` is the ``ivmixed`` command."""

from .cli import main

raise SystemExit(main())
