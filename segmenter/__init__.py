"""The segmentation core: pure, no Kafka, Faust or Redis import.

Per-customer bounded state (:mod:`segmenter.state`), the rules of the
catalogue (:mod:`segmenter.rules`), thresholds (:mod:`segmenter.config`), the
deadline index (:mod:`segmenter.clock`) and the engine that applies events,
routed messages and the passing of time (:mod:`segmenter.engine`). Time,
configuration and state are passed in; changes are returned.
"""
