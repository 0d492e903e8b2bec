"""A tiny Qwen2-architecture model and a byte-level BPE tokenizer, built here with no download.

The miniature experiment and the test suite use these in place of Qwen2.5: the tokenizer splits text with
Qwen2's pre-tokenizer pattern, and the model is a `Qwen2ForCausalLM`, so everything downstream (TRL, the
evaluator, MLX conversion) takes the same code path as it does for a model from the hub. The think and
answer tags are *normal* added tokens: special tokens are stripped from decoded completions before rewards
see them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Qwen2's pre-tokenizer split pattern (from its tokenizer.json): contractions, letters, single digits,
# punctuation runs, newlines and spaces.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
EOS_TOKEN = "<|endoftext|>"
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on `texts` and wrap it as a transformers fast tokenizer.

    Every byte is in the alphabet, so any string round-trips, whatever the training text held.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)
    wrapped.add_tokens(TAG_TOKENS)  # normal tokens, so decoding keeps them
    return wrapped


def build_model(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0):
    """A randomly initialised `Qwen2ForCausalLM` sized for `tokenizer` (float32, tied embeddings)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def save_tiny_model(output_dir: str | Path, texts: Iterable[str], seed: int = 0, **model_kwargs) -> Path:
    """Train a tokenizer on `texts`, build a random tiny model and save both in HF format to `output_dir`."""
    output_dir = Path(output_dir)
    tokenizer = train_tokenizer(texts)
    model = build_model(tokenizer, seed=seed, **model_kwargs)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
