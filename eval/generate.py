"""Completions for benchmark prompts with a Hugging Face causal LM (batched ``generate``)."""

import torch
from tqdm import tqdm

# Where a function-completion answer ends (the stop sequences of the HumanEval/Codex paper).
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")


def truncate_at_stop(completion: str, stops: tuple[str, ...] = STOP_SEQUENCES) -> str:
    cut = min((i for i in (completion.find(s) for s in stops) if i != -1), default=len(completion))
    return completion[:cut]


@torch.no_grad()
def generate_completions(model, tokenizer, prompts: list[str], max_new_tokens: int = 64,
                         batch_size: int = 16, temperature: float = 0.0, top_p: float = 1.0,
                         seed: int = 0, progress: bool = False) -> list[str]:
    """One completion per prompt, greedy when ``temperature`` is 0, cut at the stop sequences."""
    torch.manual_seed(seed)
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
        {"do_sample": False}
    completions = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generating", disable=not progress):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True).to(device)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=tokenizer.eos_token_id, **sampling)
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            completions += [truncate_at_stop(text) for text in
                            tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = padding_side
    return completions
