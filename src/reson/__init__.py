"""reson: teach a base language model to reason with pure reinforcement learning (R1-Zero with GRPO)."""
