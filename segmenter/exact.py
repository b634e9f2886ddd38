"""The core's one class of exact rationals: day figures, shares, the language's decimals.

``quicktions.Fraction`` is a C drop-in for :class:`fractions.Fraction` (the same values, hashes and
comparisons, with ints, floats and standard fractions alike); the standard one is pure Python, and the
definitions' day figures and thresholds build and compare several per evaluation. Every module of the
core takes ``Fraction`` from here, so one class flows through the compiled modules' type checks.
"""

from __future__ import annotations

from quicktions import Fraction

__all__ = ["Fraction"]
