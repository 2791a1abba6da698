"""Completions for benchmark prompts with a Hugging Face causal LM (batched ``generate``).

Sampling draws either from the global generator, seeded once per call, or, given one seed per
prompt, each row from its own generator, so a prompt's sample does not depend on the prompts
batched with it (what makes :mod:`eval.ray_generate` reproducible across replicas).
"""

import torch
from tqdm import tqdm
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

# Where a function-completion answer ends (the stop sequences of the HumanEval/Codex paper).
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")


def truncate_at_stop(completion: str, stops: tuple[str, ...] = STOP_SEQUENCES) -> str:
    cut = min((i for i in (completion.find(s) for s in stops) if i != -1), default=len(completion))
    return completion[:cut]


class _SeededGumbelSampler(LogitsProcessor):
    """Samples each row from its own ``torch.Generator`` by the Gumbel-max trick:
    ``argmax(logits + Gumbel noise)`` is a draw from ``softmax(logits)``, so greedy decoding over
    the perturbed logits samples, and a row's draws do not depend on the rows batched with it."""

    def __init__(self, seeds: list[int], device: torch.device):
        self._generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        exponential = torch.stack([torch.empty_like(scores[0]).exponential_(generator=generator)
                                   for generator in self._generators])
        # A draw of exactly 0 would give -inf - log(0) = nan on a filtered-out token.
        return scores - exponential.clamp_(min=torch.finfo(scores.dtype).tiny).log()


def _sampling(temperature: float, top_p: float, seeds: list[int] | None, device: torch.device) -> dict:
    """``generate`` arguments for one batch: greedy at temperature 0; without ``seeds``, sampling
    from the global generator (the model's generation config, e.g. its ``top_k``, applies too);
    with ``seeds``, temperature and top-p only, then the per-row seeded sampler."""
    if temperature == 0:
        return {"do_sample": False}
    if seeds is None:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p}
    warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])
    return {"do_sample": False, "logits_processor": [*warpers, _SeededGumbelSampler(seeds, device)]}


@torch.no_grad()
def generate_completions(model, tokenizer, prompts: list[str], max_new_tokens: int = 64,
                         batch_size: int = 16, temperature: float = 0.0, top_p: float = 1.0,
                         seed: int = 0, progress: bool = False, stops: tuple[str, ...] | None = STOP_SEQUENCES,
                         seeds: list[int] | None = None) -> list[str]:
    """One completion per prompt, greedy when ``temperature`` is 0, cut at ``stops`` (``None``:
    uncut, e.g. for answers that must keep a whole fenced block).

    Sampling uses the global generator seeded with ``seed``, or, when ``seeds`` gives one seed per
    prompt, a generator per prompt: the same samples whatever ``batch_size`` and prompt order. A
    prefix-tuning ``PeftModel`` generates with its prefix (see :func:`_prefix_as_cache`).
    """
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts: give one seed per prompt")
    torch.manual_seed(seed)
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    completions = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generating", disable=not progress):
            end = start + batch_size
            sampling = _sampling(temperature, top_p, None if seeds is None else seeds[start:end], device)
            completions += _generate_batch(model, tokenizer, prompts[start:end], device,
                                           max_new_tokens=max_new_tokens, **sampling)
    finally:
        tokenizer.padding_side = padding_side
    return completions if stops is None else [truncate_at_stop(text, stops) for text in completions]


def _generate_batch(model, tokenizer, prompts: list[str], device: torch.device, **generate_kwargs) -> list[str]:
    """The decoded new tokens of one batch, left-padded so that every prompt ends where generation starts."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    model, inputs = _prefix_as_cache(model, dict(inputs))
    output = model.generate(**inputs, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                            **generate_kwargs)
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _prefix_as_cache(model, inputs: dict) -> tuple:
    """For a prefix-tuning ``PeftModel``: its base model, and inputs that carry the prefix as a
    prefilled KV cache standing for as many placeholder tokens ahead of the prompt (attended to and
    shifting positions as in PEFT's forward, the one training optimizes). Any other model and its
    inputs as they are.

    Why: ``PeftModel.generate`` (peft 0.21) hands the prefix over as ``past_key_values``, which
    transformers 5 ignores for the ``cache`` it passes, so the prefix is dropped (and padded rows
    are misaligned by the prefix's attention mask).
    """
    config = getattr(model, "active_peft_config", None)
    if config is None or config.peft_type != "PREFIX_TUNING":
        return model, inputs
    ids = inputs["input_ids"]
    placeholders = ids.new_zeros((ids.shape[0], config.num_virtual_tokens))
    return model.get_base_model(), {
        "input_ids": torch.cat([placeholders, ids], dim=1),
        "attention_mask": torch.cat([torch.ones_like(placeholders), inputs["attention_mask"]], dim=1),
        "cache": model.get_prompt(ids.shape[0]),
    }
