"""The fine-tuning methods: one function builds the model a run trains, chosen by ``TrainConfig.method``.

``lora``, ``ia3`` and ``prefix`` wrap the frozen base in a PEFT adapter; ``full`` trains every
weight. ``quantization`` loads the frozen base through bitsandbytes (QLoRA), which needs a CUDA GPU.
"""

import importlib.util

import torch
from peft import IA3Config, LoraConfig, PeftConfig, PrefixTuningConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel

from train.config import TrainConfig

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class QuantizationUnavailable(RuntimeError):
    pass


def build_model(config: TrainConfig) -> torch.nn.Module:
    model = load_base_model(config)
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, so frozen embeddings are fine.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.method == "full":
        return model
    if config.quantization is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, peft_config(config))


def load_base_model(config: TrainConfig) -> PreTrainedModel:
    if config.quantization is None:
        return AutoModelForCausalLM.from_pretrained(config.model, dtype=DTYPES[config.precision])
    return AutoModelForCausalLM.from_pretrained(config.model, quantization_config=bitsandbytes_config(config),
                                                device_map={"": torch.cuda.current_device()})


def bitsandbytes_config(config: TrainConfig) -> BitsAndBytesConfig:
    """Refuses, saying why, wherever bitsandbytes cannot quantize: never a silent full-precision base."""
    if not torch.cuda.is_available():
        raise QuantizationUnavailable(
            f"quantization={config.quantization!r} needs a CUDA GPU (bitsandbytes quantizes on CUDA only) and "
            "this worker has none; set quantization=null to train the unquantized model")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise QuantizationUnavailable(
            f"quantization={config.quantization!r} needs the bitsandbytes package: pip install bitsandbytes")
    if config.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute_dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def peft_config(config: TrainConfig) -> PeftConfig:
    if config.method == "lora":
        return LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    if config.method == "ia3":
        return IA3Config(target_modules=config.ia3.target_modules,
                         feedforward_modules=config.ia3.feedforward_modules, task_type="CAUSAL_LM")
    return PrefixTuningConfig(num_virtual_tokens=config.prefix.num_virtual_tokens, task_type="CAUSAL_LM")
