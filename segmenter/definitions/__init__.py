"""Operator-defined segments: YAML definition files, the ``when`` language, and their run beside the catalogue.

* :mod:`~segmenter.definitions.expr`: the safe expression language (parsed, checked, walked; never ``eval``).
* :mod:`~segmenter.definitions.loader`: files to checked definitions, errors with file, line and column.
* :mod:`~segmenter.definitions.runtime`: the engine hook (traits, moments, deadlines).
* :mod:`~segmenter.definitions.testing`: a definition's own tests and the diff of two directories.
"""

from segmenter.definitions.loader import Definition, DefinitionError, check_dir, load_dir
from segmenter.definitions.runtime import Definitions

__all__ = ["Definition", "DefinitionError", "Definitions", "check_dir", "load_dir"]
