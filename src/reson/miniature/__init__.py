"""The offline miniature: synthetic problems, a tiny base model built here, and `reson demo`."""
