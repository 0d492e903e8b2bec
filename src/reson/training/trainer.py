"""`ResonTrainer`: TRL's GRPOTrainer plus what it has no hook for, and nothing else.

- Running out of GPU memory says in which phase of which step (``OutOfMemory``): generation, the log-probability
  scoring of the completions (rewards and log-probabilities), or the training step's forward and backward.
- A loss that is not finite stops the run (``TrainingDiverged``) before its gradients reach the weights: in fp16 a
  Qwen-family model can overflow in the forward pass (all-"!" output, NaN from the first layer), which no loss scale
  cures; `reson train` then says to train in fp32.
- ``completions/truncated_ratio``: the share of completions that reached ``max_completion_length`` without EOS.
  TRL's ``completions/clipped_ratio`` counts every completion that ended without EOS: with the vLLM recipes' stop at
  ``</answer>`` that is every answered one too, so it heads towards 100 % as training succeeds. Truncation, the share
  whose answer was cut off, is the figure to watch (TRL #5697, #6263: too short a limit zeroes the reward).
- On a CPU, completions come from ``reson.training.sampler``, which drops each row from the batch when it ends
  (``model.generate`` carries finished rows to the longest one's end): ``generate``'s tokens, in less time.
  Settings it does not implement (min-p, a repetition penalty, extra ``generation_kwargs``) keep TRL's ``generate``.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate.utils import is_peft_model
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from reson.core import lora
from reson.training import sampler
from reson.training.callbacks import parameters_sharded
from reson.training.faults import TrainingDiverged, out_of_memory

TRUNCATED = "completions/truncated_ratio"
# the generation settings TRL's transformers path always sets, at values reson.training.sampler implements
SAMPLER_SETTINGS = {"min_p": None, "repetition_penalty": 1.0, "cache_implementation": None}


class ResonTrainer(GRPOTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.use_vllm and is_peft_model(self.model) and not parameters_sharded(self):
            self._sync_merged_out_of_place()

    def _sync_merged_out_of_place(self) -> None:
        """TRL's vLLM weight sync, fed by `reson.core.lora.vllm_weights` (module docstring); TRL offers no hook."""
        generation = self.vllm_generation
        generation._iter_named_params = lambda: lora.vllm_weights(generation.model, generation._fix_param_name_to_vllm)

    @contextlib.contextmanager
    def _phase(self, name: str):
        try:
            yield
        except torch.OutOfMemoryError as error:
            raise out_of_memory(error, name, self.state.global_step + 1) from None

    def training_step(self, *args, **kwargs):
        with self._phase("the training step's forward and backward"):
            return super().training_step(*args, **kwargs)

    def _generate_and_score_completions(self, *args, **kwargs):
        with self._phase("scoring the completions (rewards and log-probabilities)"):
            return super()._generate_and_score_completions(*args, **kwargs)

    def _samples_on_cpu(self, images, multimodal_fields) -> bool:
        """Whether this round's completions come from `reson.training.sampler` (module docstring)."""
        if self.use_vllm or self.use_transformers_continuous_batching or self.accelerator.device.type != "cpu":
            return False
        if (images is not None and any(images)) or multimodal_fields or self.args.generation_kwargs:
            return False
        return all(self.generation_kwargs.get(key) == value for key, value in SAMPLER_SETTINGS.items())

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if not self._samples_on_cpu(images, multimodal_fields):
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model,
            torch.no_grad(),
        ):
            completion_ids = sampler.sample(
                model,
                prompt_ids,
                max_new_tokens=self.max_completion_length,
                temperature=self.temperature,
                eos_ids=set(self.eos_token_ids),
                pad_id=self._tokenizer.pad_token_id,
                top_k=self.top_k or 0,
                top_p=self.top_p,
            )
        return completion_ids, None

    def _generate(self, prompts: list):
        with self._phase("generation"):
            generated = super()._generate(prompts)
        completion_ids = generated[1]  # one list of token ids per completion, this process's share
        ends = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        cut = [len(ids) >= self.max_completion_length and (not ids or ids[-1] not in ends) for ids in completion_ids]
        shares = self.accelerator.gather(torch.tensor(cut, device=self.accelerator.device))
        self._metrics["train" if self.model.training else "eval"][TRUNCATED].append(shares.float().mean().item())
        return generated

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(f"the loss of step {self.state.global_step + 1} is {loss.item()}")
        return loss
