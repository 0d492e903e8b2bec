"""Datasets and prompt templates: GSM8K, MATH and friends, from the hub or from local files.

(Being built: loaders, normalisation, canaries and mixing land here. The templates below are the contract
the rest of the package uses.)
"""

from __future__ import annotations

# DeepSeek-R1-Zero's template for base models: plain text, no chat template.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {question}. Assistant:"
)
# The same with the think tag prefilled (Dr. GRPO / Oat-Zero, Open-Reasoner-Zero): completions start inside
# the think block.
R1_ZERO_THINK_TEMPLATE = R1_ZERO_TEMPLATE + " <think>"
# A plain prompt for evaluating base models the way their reports do.
PLAIN_TEMPLATE = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n"

TEMPLATES = {"r1_zero": R1_ZERO_TEMPLATE, "r1_zero_think": R1_ZERO_THINK_TEMPLATE, "plain": PLAIN_TEMPLATE}


def format_prompt(question: str, template: str = "r1_zero", tokenizer=None) -> str:
    """The prompt for `question` under a named template; "chat" applies the tokenizer's chat template."""
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat' needs a tokenizer with a chat template; use 'r1_zero' for base models.")
        messages = [{"role": "user", "content": PLAIN_TEMPLATE.format(question=question)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: choose one of {', '.join([*TEMPLATES, 'chat'])}.")
    return TEMPLATES[template].format(question=question.strip())
