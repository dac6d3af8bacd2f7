"""The live engine's parts, built on the same ``rooney_core`` code as research and backtests:
incremental session bars from minute bars (``bars``: the batch build's session calendar,
keys and aggregation; a partial hour is never emitted; bad minutes are refused by name),
rolling feature buffers that run the registry's own feature functions over the declared
warm-ups (``features``), and around them the feeds, the paper broker, order routers and the
prediction log.
"""
