"""Tools around a run: `reson plan`, `reson report`, `reson convert` and `reson chat`."""
