"""`reson eval`, `reson compare` and `reson score`."""
