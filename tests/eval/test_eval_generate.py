import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.generate import generate_completions, truncate_at_stop

PROMPTS = ['def add_3(x):\n    """Return x plus 3."""\n', "def f(xs):\n", "x = "]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(tiny_model)


def test_truncate_at_the_first_stop_sequence():
    assert truncate_at_stop("    return x\n\ndef other():\n    pass") == "    return x\n"
    assert truncate_at_stop("    return x\n# trailing comment\nprint(1)") == "    return x"
    assert truncate_at_stop("    return x\n") == "    return x\n"


def test_generation_gives_one_completion_per_prompt_and_is_deterministic(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    first = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=2)
    second = generate_completions(model, tokenizer, PROMPTS[:1], max_new_tokens=8)
    assert len(first) == 3 and all(isinstance(text, str) for text in first)
    assert second[0] == first[0]  # left padding in a batch does not change greedy output
    assert tokenizer.padding_side == "right"


def test_completions_are_cut_at_the_given_stops_or_not_at_all(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    uncut = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=12, stops=None)
    cut_at_newline = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=12, stops=("\n",))

    assert cut_at_newline == [text.split("\n")[0] for text in uncut] != uncut
    assert generate_completions(model, tokenizer, PROMPTS, max_new_tokens=12) == \
        [truncate_at_stop(text) for text in uncut]


def test_a_prompt_seed_gives_the_same_sample_whatever_the_batch(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    sample = {"max_new_tokens": 12, "temperature": 0.8, "top_p": 0.95, "stops": None}
    seeds = [11, 22, 33]
    batched = generate_completions(model, tokenizer, PROMPTS, batch_size=3, seeds=seeds, **sample)
    one_by_one = [generate_completions(model, tokenizer, [prompt], seeds=[seed], **sample)[0]
                  for prompt, seed in zip(PROMPTS, seeds)]
    reversed_order = generate_completions(model, tokenizer, PROMPTS[::-1], batch_size=2, seeds=seeds[::-1], **sample)

    assert batched == one_by_one == reversed_order[::-1]
    assert len(set(generate_completions(model, tokenizer, PROMPTS[:1] * 3, seeds=seeds, **sample))) > 1


def test_seeds_must_match_the_prompts(model_and_tokenizer):
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate_completions(*model_and_tokenizer, PROMPTS, temperature=0.8, seeds=[0])
