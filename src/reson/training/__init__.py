"""`reson train`: the GRPO recipe around TRL and its callbacks."""
