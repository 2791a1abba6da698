import gzip
import json

import pytest

from eval.benchmarks import load_humaneval
from eval.problems import load_samples

PROBLEM = {
    "task_id": "t/0",
    "prompt": "def f():\n",
    "canonical_solution": "    return 1\n",
    "test": "def check(c):\n    assert c() == 1\n",
    "entry_point": "f",
}


def _write(path, lines):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def test_default_problems_are_the_164_humaneval_tasks_in_order(humaneval):
    assert len(humaneval) == 164
    assert list(humaneval)[:3] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert humaneval["HumanEval/0"]["entry_point"] == "has_close_elements"


@pytest.mark.parametrize("name", ["problems.jsonl", "problems.jsonl.gz"])
def test_reads_plain_and_gzipped_files_keyed_in_file_order(tmp_path, name):
    second = {**PROBLEM, "task_id": "t/1"}
    path = _write(tmp_path / name, [json.dumps(second), "", json.dumps(PROBLEM)])

    problems = load_humaneval(path)

    assert list(problems) == ["t/1", "t/0"]
    assert {key: problems["t/0"][key] for key in PROBLEM} == PROBLEM


def test_missing_field_names_file_line_and_field(tmp_path):
    broken = {key: value for key, value in PROBLEM.items() if key != "entry_point"}
    path = _write(tmp_path / "p.jsonl", [json.dumps(PROBLEM), "", json.dumps(broken)])

    with pytest.raises(ValueError, match=r"p\.jsonl:3: missing field 'entry_point'"):
        load_humaneval(path)


def test_bad_json_names_file_and_line(tmp_path):
    path = _write(tmp_path / "p.jsonl", [json.dumps(PROBLEM), '{"task_id": '])

    with pytest.raises(ValueError, match=r"p\.jsonl:2: invalid JSON"):
        load_humaneval(path)


def test_samples_keep_extra_fields(tmp_path):
    sample = {"task_id": "t/0", "completion": "    return 1\n", "temperature": 0.8}
    path = _write(tmp_path / "s.jsonl", [json.dumps(sample)])

    assert load_samples(path) == [sample]


def test_sample_without_completion_names_file_line_and_field(tmp_path):
    path = _write(tmp_path / "s.jsonl", [json.dumps({"task_id": "t/0"})])

    with pytest.raises(ValueError, match=r"s\.jsonl:1: missing field 'completion'"):
        load_samples(path)


def test_sample_for_unknown_task_names_file_and_line(tmp_path):
    lines = [json.dumps({"task_id": t, "completion": ""}) for t in ("t/0", "t/9")]
    path = _write(tmp_path / "s.jsonl", lines)

    with pytest.raises(ValueError, match=r"s\.jsonl:2: unknown task_id 't/9'"):
        load_samples(path, task_ids={"t/0"})
