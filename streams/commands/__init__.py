"""One module per ``segmenter`` subcommand, each with ``register(subparsers)``.

A module's ``register`` adds its parser and sets ``func`` (``args -> exit code``).
Heavy imports (faust, aiokafka, redis) happen inside ``func``, so ``segmenter
replay`` starts fast.
"""

COMMANDS = (
    "replay",
    "segments",
    "metrics",
    "import_",
    "schema",
    "worker",
    "serve",
    "produce",
    "who",
    "explain",
    "members",
    "lag",
    "validate",
    "test",
    "diff",
    "reconcile",
)
"""Subcommand modules in the order ``segmenter --help`` lists them."""
