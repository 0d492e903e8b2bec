"""Parsing, rewards, the verifier, metrics, data, config and generation: what training and evaluation share."""
