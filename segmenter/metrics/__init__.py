"""The metric library: what each rule family keeps, and the named figures it answers.

:mod:`segmenter.metrics.kept` holds the bounded structures (exact for their question, bounded by time,
with documented hard bounds); :mod:`segmenter.metrics.registry` names every figure a segment is decided
on, with its unit, its memory bound per customer and when it next changes by time alone
(``segmenter metrics`` prints the list).
"""
