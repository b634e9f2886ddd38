"""The one port to Faust, aiokafka and mode.

Every module of the worker that needs the framework goes through this package (an import-linter
contract holds the rest of ``streams`` to it); every use of a private name of theirs is here, marked
``# noqa: SLF001 - <why>``, and listed in :mod:`streams.faustx.internals`, checked when the worker is
built.
"""
