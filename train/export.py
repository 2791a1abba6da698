"""Merge-and-export: a checkpoint as a plain Hugging Face model directory, the adapter folded into
the base weights, that ``AutoModelForCausalLM.from_pretrained`` loads without PEFT.

    python -m train.export CHECKPOINT_DIR OUTPUT_DIR
"""

import argparse

from peft import PeftModel
from transformers import AutoTokenizer

from train.checkpoints import load_trained_model


def merge_and_export(checkpoint_dir: str, output_dir: str) -> str:
    """LoRA and IA3 adapters merge; a fully fine-tuned model is saved as it is. Prefix tuning has
    no weights to merge into, so it is refused."""
    model = load_trained_model(checkpoint_dir)
    if isinstance(model, PeftModel):
        if model.peft_config["default"].is_prompt_learning:
            raise ValueError(f"{checkpoint_dir} holds a {model.peft_config['default'].peft_type.value} adapter, "
                             "which adds virtual tokens instead of weights: it cannot be merged")
        model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(checkpoint_dir).save_pretrained(output_dir)
    return output_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint_dir")
    parser.add_argument("output_dir")
    args = parser.parse_args()
    print(merge_and_export(args.checkpoint_dir, args.output_dir))
