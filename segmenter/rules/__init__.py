"""The rules of the segment catalogue, one module per family.

* :mod:`~segmenter.rules.lifecycle`: the one lifecycle stage.
* :mod:`~segmenter.rules.traits`: traits over orders, browsing, carts, returns, referrals.
* moments (``impulse_buy``, ``cart_abandoned``) are revealed while folding events: :mod:`segmenter.apply`.
"""
