import json
import os
import time

from data_pipeline.synthetic_tasks import PRETRAIN_FAMILIES, write_embedded_world
from eval.benchmarks import load_humaneval
from eval.sandbox import check_completion


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_world_has_enough_real_problems_and_instructions(tmp_path):
    paths = write_embedded_world(str(tmp_path), seed=0)
    problems = load_humaneval(paths["problems"])
    assert len(problems) >= 50
    assert len(_rows(paths["instructions"])) >= 2000
    for problem in list(problems.values())[::6]:
        assert check_completion(problem, problem["canonical_solution"]).passed
        assert not check_completion(problem, "    return None\n").passed


def test_held_out_problems_never_appear_in_training_text(tmp_path):
    paths = write_embedded_world(str(tmp_path), seed=0)
    held_out = {problem["prompt"] for problem in _rows(paths["problems"])}
    training_text = [row["output"] for row in _rows(paths["instructions"])]
    training_text += [row["text"] for row in _rows(paths["pretrain_corpus"])]
    assert not any(prompt in text for prompt in held_out for text in training_text)


def test_pretraining_corpus_asks_only_for_the_pretraining_families(tmp_path):
    paths = write_embedded_world(str(tmp_path), seed=0)
    asked = [row["text"] for row in _rows(paths["pretrain_corpus"]) if "### Response:" in row["text"]]
    assert asked
    for text in asked:
        function = text.split("### Response:\ndef ", 1)[1].split("(", 1)[0]
        assert any(function.startswith(family + "_") for family in PRETRAIN_FAMILIES), function


def test_same_seed_same_world_other_seed_other_world(tmp_path):
    first = write_embedded_world(str(tmp_path / "a"), seed=3)
    second = write_embedded_world(str(tmp_path / "b"), seed=3)
    third = write_embedded_world(str(tmp_path / "c"), seed=4)
    for name in first:
        assert open(first[name]).read() == open(second[name]).read()
    assert open(first["problems"]).read() != open(third["problems"]).read()


def test_writing_the_same_world_again_leaves_its_files_untouched(tmp_path):
    """Prepared data is reused while its input files keep their mtime: a rerun must not bump it."""
    paths = write_embedded_world(str(tmp_path), seed=3, n_instructions=200)
    before = {name: os.stat(path).st_mtime_ns for name, path in paths.items()}
    time.sleep(0.01)
    write_embedded_world(str(tmp_path), seed=3, n_instructions=200)
    assert {name: os.stat(path).st_mtime_ns for name, path in paths.items()} == before
    write_embedded_world(str(tmp_path), seed=4, n_instructions=200)
    assert os.stat(paths["problems"]).st_mtime_ns != before["problems"]
