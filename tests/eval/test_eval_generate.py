from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.generate import generate_completions, truncate_at_stop


def test_truncate_at_the_first_stop_sequence():
    assert truncate_at_stop("    return x\n\ndef other():\n    pass") == "    return x\n"
    assert truncate_at_stop("    return x\n# trailing comment\nprint(1)") == "    return x"
    assert truncate_at_stop("    return x\n") == "    return x\n"


def test_generation_gives_one_completion_per_prompt_and_is_deterministic(tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompts = ['def add_3(x):\n    """Return x plus 3."""\n', "def f(xs):\n", "x = "]
    first = generate_completions(model, tokenizer, prompts, max_new_tokens=8, batch_size=2)
    second = generate_completions(model, tokenizer, prompts[:1], max_new_tokens=8)
    assert len(first) == 3 and all(isinstance(text, str) for text in first)
    assert second[0] == first[0]  # left padding in a batch does not change greedy output
    assert tokenizer.padding_side == "right"
