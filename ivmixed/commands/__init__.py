"""Sub-commands of the ``ivmixed`` CLI; each module has ``register(subparsers)``."""
