import json
import math
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from train.tiny_llama import ensure_tiny_llama, train_tokenizer

CODE = 'def add_3(x):\n    """Return x plus 3."""\n    return x + 3\n'


def test_tokenizer_round_trips_code_and_gives_pad_its_own_id():
    tokenizer = train_tokenizer([CODE] * 20, vocab_size=300)
    ids = tokenizer(CODE)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == CODE
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3
    assert tokenizer.pad_token_id not in tokenizer("\n\n x", add_special_tokens=False)["input_ids"]


def test_prompt_ending_in_newline_tokenizes_like_the_middle_of_a_function():
    tokenizer = train_tokenizer([CODE] * 20, vocab_size=300)
    head = CODE.split("    return")[0]
    assert tokenizer(CODE)["input_ids"][:len(tokenizer(head)["input_ids"])] == tokenizer(head)["input_ids"]


def test_built_model_loads_as_a_hugging_face_llama(tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert model.config.model_type == "llama"
    with torch.no_grad():
        logits = model(**tokenizer(CODE, return_tensors="pt")).logits
    assert logits.shape[-1] == len(tokenizer)
    info = json.loads((Path(tiny_model) / "build_info.json").read_text())
    assert info["final_loss"] < 0.9 * math.log(len(tokenizer))  # below an untrained model's loss


def test_second_call_reuses_the_cached_model(tiny_model, tiny_model_config, embedded_world):
    weights = Path(tiny_model) / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    assert ensure_tiny_llama(embedded_world["pretrain_corpus"], tiny_model, tiny_model_config) == tiny_model
    assert weights.stat().st_mtime_ns == built_at


def test_changed_config_rebuilds(tiny_model, tiny_model_config, embedded_world, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    changed = tiny_model_config.model_copy(update={"pretrain_steps": 2})
    ensure_tiny_llama(embedded_world["pretrain_corpus"], str(copy), changed)
    assert json.loads((copy / "build_info.json").read_text())["fingerprint"] != \
        json.loads((Path(tiny_model) / "build_info.json").read_text())["fingerprint"]
