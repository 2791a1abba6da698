"""The embedded default's base model: a few-million-parameter Llama with a locally trained tokenizer.

``ensure_tiny_llama`` trains a byte-level BPE tokenizer and pretrains the model on a text corpus
once, then caches the result as an ordinary Hugging Face model directory, so everything
downstream loads it with ``AutoModelForCausalLM.from_pretrained`` exactly like a hub model.
"""

import hashlib
import json
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from train.config import TinyLlamaConfig

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE that prepends BOS; pad has an id of its own so ``generate`` never masks
    real characters."""
    tokenizer = Tokenizer(models.BPE())
    # Newlines stay tokens of their own, so a prompt that ends in "\n" (as benchmark prompts do)
    # tokenizes the same way as the middle of a training example.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def build_model(tokenizer: PreTrainedTokenizerFast, config: TinyLlamaConfig) -> LlamaForCausalLM:
    torch.manual_seed(config.seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        max_position_embeddings=config.max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(llama)


def packed_batches(token_ids: list[int], config: TinyLlamaConfig, generator: torch.Generator):
    """Endless random batches of ``seq_len`` windows cut from the concatenated corpus."""
    stream = torch.tensor(token_ids)
    starts = len(stream) - config.seq_len - 1
    while True:
        offsets = torch.randint(0, starts, (config.batch_size,), generator=generator)
        yield torch.stack([stream[o:o + config.seq_len] for o in offsets])


def pretrain(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, texts: list[str],
             config: TinyLlamaConfig) -> float:
    """Next-token pretraining with AdamW and cosine decay; returns the final training loss."""
    ids = [i for text in texts for i in [*tokenizer.encode(text), tokenizer.eos_token_id]]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate,
                                                   total_steps=config.pretrain_steps, pct_start=0.05)
    batches = packed_batches(ids, config, torch.Generator().manual_seed(config.seed))
    model.train()
    progress = tqdm(range(config.pretrain_steps), desc="pretraining tiny llama", mininterval=2)
    for _ in progress:
        batch = next(batches)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return loss.item()


def _fingerprint(corpus_path: str, config: TinyLlamaConfig) -> str:
    digest = hashlib.sha256(Path(corpus_path).read_bytes())
    digest.update(config.model_dump_json().encode())
    return digest.hexdigest()


def ensure_tiny_llama(corpus_path: str, output_dir: str, config: TinyLlamaConfig = TinyLlamaConfig()) -> str:
    """Returns a Hugging Face model directory, building it only if no matching cache exists.

    ``corpus_path`` is a JSONL file of ``{"text": ...}`` rows.
    """
    out = Path(output_dir)
    marker = out / "build_info.json"
    fingerprint = _fingerprint(corpus_path, config)
    if marker.exists() and json.loads(marker.read_text())["fingerprint"] == fingerprint:
        return str(out)
    texts = [json.loads(line)["text"] for line in Path(corpus_path).read_text().splitlines()]
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    model = build_model(tokenizer, config)
    final_loss = pretrain(model, tokenizer, texts, config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker.write_text(json.dumps({
        "fingerprint": fingerprint, "final_loss": final_loss, "parameters": model.num_parameters(),
        "build_seconds": round(time.perf_counter() - started, 1),
    }))
    return str(out)
