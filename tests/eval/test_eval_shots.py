import math

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

from eval.shots import BM25, ShotSelection, code_tokens, problem_seed, select_shots
from train.tiny_llama import train_tokenizer


def _row(instruction: str, output: str = "", input: str = "", **extra) -> dict:
    return {"instruction": instruction, "input": input, "output": output, **extra}


def _problem(task_id: str, prompt: str) -> dict:
    return {"task_id": task_id, "prompt": prompt, "entry_point": "f", "test": "", "canonical_solution": ""}


POOL = [
    _row("Reverse a string.", "def reverse(s):\n    return s[::-1]\n"),
    _row("Return the sum of a list of numbers.", "def total(numbers):\n    return sum(numbers)\n"),
    _row("Check whether a number is prime.",
         "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n"),
    _row("Sort a list in descending order.", "def sort_desc(xs):\n    return sorted(xs, reverse=True)\n"),
    _row("Implement the function below.", "def countVowels(s):\n    return sum(c in 'aeiou' for c in s)\n",
         input="def countVowels(s):\n    \"\"\"How many vowels s has.\"\"\""),
    _row("Return the larger of two numbers.", "def larger(a, b):\n    return max(a, b)\n"),
]
PRIME = _problem("HumanEval/31", 'def is_prime_number(n):\n    """Return True if n is a prime number."""\n')
VOWELS = _problem("HumanEval/64", 'def count_vowels(word):\n    """Count the vowels in word."""\n')
PROBLEMS = [_problem(f"Toy/{i}", f"def f{i}(x):\n    \"\"\"Task number {i}.\"\"\"\n") for i in range(5)]


def test_fixed_gives_every_problem_the_first_k_rows():
    shots = select_shots(PROBLEMS, POOL, ShotSelection(strategy="fixed", k=3))
    assert shots == [POOL[:3]] * len(PROBLEMS)
    assert shots[0][0] is POOL[0]  # the pool's rows, not copies


def test_zero_shots_is_an_empty_list_per_problem():
    assert select_shots(PROBLEMS, POOL, ShotSelection(strategy="bm25", k=0)) == [[]] * len(PROBLEMS)


def test_random_shots_are_the_same_on_every_call_and_in_any_problem_order():
    selection = ShotSelection(strategy="random", k=3, seed=7)
    first = select_shots(PROBLEMS, POOL, selection)
    again = select_shots(PROBLEMS, POOL, selection)
    reordered = select_shots(PROBLEMS[::-1], POOL, selection)
    alone = select_shots(PROBLEMS[2:3], POOL, selection)
    assert first == again == reordered[::-1]
    assert alone[0] == first[2]
    assert all(len(shots) == 3 and len({id(row) for row in shots}) == 3 for shots in first)
    assert len({tuple(id(row) for row in shots) for shots in first}) > 1  # problems differ
    assert select_shots(PROBLEMS, POOL, ShotSelection(strategy="random", k=3, seed=8)) != first


def test_problem_seed_is_a_stable_hash_not_pythons():
    # Fixed values: Python's hash() of a str changes from process to process.
    assert problem_seed(0, "HumanEval/0") == 13122696088751099866
    assert problem_seed(1, "HumanEval/0") == 14640983072744816634


def test_code_tokens_split_identifiers_into_their_parts():
    assert code_tokens("def parseHTTP_header2(rawText):") == [
        "def", "parsehttp_header2", "parse", "http", "header", "2", "rawtext", "raw", "text"]
    assert code_tokens("Count the VOWELS; count_vowels") == [
        "count", "the", "vowels", "count_vowels", "count", "vowels"]


def test_bm25_score_matches_a_hand_computation():
    documents = [["sort", "list"], ["reverse", "string", "string"], ["sum", "list", "numbers"]]
    index = BM25(documents)
    # N = 3 documents, "list" is in n = 2: idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6).
    # avgdl = 8 / 3; document 0 has |D| = 2 and f = 1:
    # 1 - 0.75 + 0.75 * 2 / (8 / 3) = 0.8125, score = ln(1.6) * 1 * 2.5 / (1 + 1.5 * 0.8125).
    expected = math.log(1.6) * 2.5 / 2.21875
    assert expected == pytest.approx(0.529582, abs=1e-6)
    scores = index.scores(["list"])
    assert scores[0] == pytest.approx(expected, rel=1e-12)
    assert scores[1] == 0.0
    assert index.scores(["list", "list", "zebra"]) == scores  # a repeated term counts once; unknown terms add 0
    # Document 1, "string" twice in |D| = 3: idf = ln(1 + 2.5 / 1.5), norm = 0.25 + 0.75 * 3 / (8 / 3).
    string = math.log(1 + 2.5 / 1.5) * 2 * 2.5 / (2 + 1.5 * (0.25 + 0.75 * 9 / 8))
    assert index.scores(["string"])[1] == pytest.approx(string, rel=1e-12)


def test_bm25_puts_the_obviously_relevant_row_first():
    prime, vowels = select_shots([PRIME, VOWELS], POOL, ShotSelection(strategy="bm25", k=2))
    assert prime[0] is POOL[2]
    assert vowels[0] is POOL[4]  # count_vowels matches countVowels through their parts


def test_bm25_ties_go_to_the_earlier_pool_row():
    pool = [_row("unrelated words"), _row("add two numbers", "a"), _row("more filler"), _row("add two numbers", "b")]
    [shots] = select_shots([_problem("T/0", "Add numbers.")], pool, ShotSelection(strategy="bm25", k=4))
    assert shots == [pool[1], pool[3], pool[0], pool[2]]  # equal scores keep pool order, zeros included


SOLVED = _row("Complete the following Python function.", PRIME["prompt"] + "    return n > 1\n")


@pytest.mark.parametrize("strategy", ["fixed", "random", "bm25"])
def test_a_problem_is_never_shown_its_own_solution(strategy):
    pool = [_row("Anything at all.", task_id=PRIME["task_id"]), SOLVED, *POOL]
    [shots] = select_shots([PRIME], pool, ShotSelection(strategy=strategy, k=len(POOL)))
    assert {id(row) for row in shots} == {id(row) for row in POOL}  # all that is left once both are out


@pytest.mark.parametrize("row", [
    _row("Anything at all.", task_id="HumanEval/31"),
    _row("Solve:", input=PRIME["prompt"].replace("    ", "\t")),  # the same prompt, whitespace aside
    SOLVED,
], ids=["same task_id", "prompt as input", "prompt inside output"])
def test_what_counts_as_the_problem_itself(row):
    assert select_shots([PRIME, VOWELS], [row, *POOL], ShotSelection(k=1)) == [[POOL[0]], [row]]


def test_rows_of_other_tasks_are_not_leaks():
    row = _row("Is it prime?", "def is_prime(n):\n    ...\n", task_id="HumanEval/32")
    assert select_shots([PRIME], [row, *POOL], ShotSelection(k=1)) == [[row]]


def test_asking_for_more_shots_than_there_are_rows_is_an_error():
    with pytest.raises(ValueError, match="only 6 rows"):
        select_shots(PROBLEMS, POOL, ShotSelection(strategy="fixed", k=7))
    with pytest.raises(ValueError, match="HumanEval/31"):
        select_shots([PRIME], [SOLVED, *POOL], ShotSelection(strategy="fixed", k=7))


@pytest.mark.parametrize("settings, message", [
    ({"strategy": "embedding", "k": 1}, "embedding_model"),
    ({"strategy": "nearest", "k": 1}, "strategy"),
    ({"strategy": "fixed", "k": -1}, "greater than or equal to 0"),
    ({"strategy": "fixed", "k": 1, "shots": 3}, "Extra inputs"),
])
def test_bad_selections_are_rejected(settings, message):
    with pytest.raises(ValidationError, match=message):
        ShotSelection(**settings)


def _save_tiny_encoder(kind: str, directory) -> str:
    """A random 2-layer model and a BPE tokenizer trained on the pool, saved like a hub model.

    The weights are written with safetensors directly: ``save_pretrained`` imports DeepSpeed, which
    takes seconds."""
    texts = [row["instruction"] + row["input"] + row["output"] for row in POOL] + [PRIME["prompt"], VOWELS["prompt"]]
    tokenizer = train_tokenizer(texts * 5, vocab_size=300)
    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "vocab_size": len(tokenizer), "max_position_embeddings": 512}
    model = LlamaModel(LlamaConfig(**sizes)) if kind == "llama" else BertModel(BertConfig(**sizes))
    if kind == "llama":
        tokenizer.pad_token = None  # as most decoder-only models ship: selection must pad with eos
    model.config.save_pretrained(directory)
    save_file(model.state_dict(), str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_embedding_shots_come_from_a_local_model(kind, tmp_path):
    model_dir = _save_tiny_encoder(kind, tmp_path)
    near_copy = _problem("T/near", POOL[3]["instruction"].replace("descending", "decreasing"))
    problems = [near_copy, PRIME]
    pool = [*POOL, SOLVED]
    selection = ShotSelection(strategy="embedding", k=3, embedding_model=model_dir)
    shots = select_shots(problems, pool, selection)
    assert shots == select_shots(problems, pool, selection)
    assert shots[0][0] is POOL[3]  # a near copy of a row is closest to it even with random weights
    assert all(len(rows) == 3 for rows in shots) and all(row is not SOLVED for row in shots[1])
