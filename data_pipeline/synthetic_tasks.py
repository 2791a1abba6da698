"""The embedded default's small world of code tasks, generated deterministically from a seed.

Every task is a small Python function from one of a few *families* (arithmetic, conditionals,
lists, strings), each family a template with parameter slots. From these the module writes:

- ``problems.jsonl``: held-out evaluation problems in the published HumanEval format
  (``task_id, prompt, canonical_solution, test, entry_point``), with real unit tests;
- ``instructions.jsonl``: an Alpaca-style instruction-tuning set (``instruction, input, output``)
  over all families, never using a (family, parameters) pair held out for evaluation;
- ``pretrain_corpus.jsonl``: ``text`` rows to pretrain the tiny base model on: instruction
  prompts with answers for the ``PRETRAIN_FAMILIES`` (arithmetic and conditionals) only, and
  bare code of every family with no name or docstring to say what it does.

The split of families is what gives fine-tuning a real effect to measure: the base model has
seen list and string code but never been asked for it; the instruction set teaches it that.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data_pipeline.templates import format_prompt

COMPLETION_INSTRUCTION = "Complete the following Python function."
INSTRUCTION_STYLES = (
    "Write a Python function `{signature}` that {description}",
    "Implement `{signature}` in Python. It should {description}",
    COMPLETION_INSTRUCTION,
)


@dataclass(frozen=True)
class Family:
    """A template for one kind of function: ``make(params)`` gives (name, docstring, body)."""

    name: str
    argument: str
    sample_params: Callable[[random.Random], tuple]
    describe: Callable[..., str]
    body: Callable[..., str]
    sample_input: Callable[[random.Random], object]


def _int(lo: int, hi: int) -> Callable[[random.Random], tuple]:
    return lambda rng: (rng.randint(lo, hi),)


def _pair(lo: int, hi: int) -> Callable[[random.Random], tuple]:
    def sample(rng: random.Random) -> tuple:
        a = rng.randint(lo, hi)
        return a, a + rng.randint(1, 20)

    return sample


def _letter(rng: random.Random) -> tuple:
    return (rng.choice("abcdefghijklmnopqrstuvwxyz"),)


def _number(rng: random.Random) -> int:
    return rng.randint(-50, 50)


def _numbers(rng: random.Random) -> list:
    return [rng.randint(-20, 20) for _ in range(rng.randint(0, 7))]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcde") for _ in range(rng.randint(0, 8)))


FAMILIES = (
    Family("add", "x", _int(2, 99), "return x plus {0}.".format, "return x + {0}".format, _number),
    Family("subtract", "x", _int(2, 99), "return x minus {0}.".format, "return x - {0}".format, _number),
    Family("multiply", "x", _int(2, 19), "return x multiplied by {0}.".format, "return x * {0}".format, _number),
    Family("remainder", "x", _int(2, 19), "return the remainder of x divided by {0}.".format,
           "return x % {0}".format, _number),
    Family("greater_than", "x", _int(-20, 20), "return True if x is greater than {0}, otherwise False.".format,
           "return x > {0}".format, _number),
    Family("clamp", "x", _pair(-30, 10), "return x limited to the range from {0} to {1}.".format,
           "return max({0}, min({1}, x))".format, _number),
    Family("parity_choice", "x", _pair(0, 50), "return {0} if x is even, otherwise {1}.".format,
           "if x % 2 == 0:\n        return {0}\n    return {1}".format, _number),
    Family("sum_above", "xs", _int(-20, 20), "return the sum of the numbers in xs that are greater than {0}.".format,
           "return sum(v for v in xs if v > {0})".format, _numbers),
    Family("count_value", "xs", _int(-20, 20), "return how many times {0} appears in xs.".format,
           "return xs.count({0})".format, _numbers),
    Family("scale_list", "xs", _int(2, 29), "return a list with every number in xs multiplied by {0}.".format,
           "return [v * {0} for v in xs]".format, _numbers),
    Family("keep_below", "xs", _int(-20, 20), "return the numbers in xs that are less than {0}, in order.".format,
           "return [v for v in xs if v < {0}]".format, _numbers),
    Family("repeat_string", "s", _int(2, 19), "return the string s repeated {0} times.".format,
           "return s * {0}".format, _word),
    Family("count_char", "s", _letter, "return how many times the character '{0}' appears in s.".format,
           "return s.count('{0}')".format, _word),
    Family("append_char", "s", _letter, "return s with '{0}' added to the end.".format,
           "return s + '{0}'".format, _word),
    Family("starts_with", "s", _letter, "return True if s starts with '{0}', otherwise False.".format,
           "return s.startswith('{0}')".format, _word),
)
PRETRAIN_FAMILIES = frozenset({"add", "subtract", "multiply", "remainder", "greater_than", "clamp", "parity_choice"})


@dataclass(frozen=True)
class Task:
    family: Family
    params: tuple

    @property
    def entry_point(self) -> str:
        suffix = "_".join(str(p).replace("-", "m") for p in self.params)
        return f"{self.family.name}_{suffix}"

    @property
    def signature(self) -> str:
        return f"{self.entry_point}({self.family.argument})"

    @property
    def description(self) -> str:
        return self.family.describe(*self.params)

    @property
    def prompt(self) -> str:
        docstring = self.description[0].upper() + self.description[1:]
        return f'def {self.signature}:\n    """{docstring}"""\n'

    @property
    def solution(self) -> str:
        return f"    {self.family.body(*self.params)}\n"

    @property
    def bare_code(self) -> str:
        """The function with an uninformative name and no docstring: Python, but no task."""
        return f"def solve({self.family.argument}):\n{self.solution}"

    def reference(self) -> Callable:
        namespace: dict = {}
        exec(self.prompt + self.solution, namespace)  # our own template code, never model output
        return namespace[self.entry_point]


def _unit_test(task: Task, rng: random.Random, n_asserts: int = 5) -> str:
    reference = task.reference()
    lines = ["def check(candidate):"]
    for _ in range(n_asserts):
        value = task.family.sample_input(rng)
        lines.append(f"    assert candidate({value!r}) == {reference(value)!r}")
    return "\n".join(lines) + "\n"


def _distinct_tasks(family: Family, rng: random.Random, count: int) -> list[Task]:
    tasks: dict[tuple, Task] = {}
    for _ in range(count * 20):
        params = family.sample_params(rng)
        tasks.setdefault(params, Task(family, params))
        if len(tasks) == count:
            break
    return list(tasks.values())


def split_tasks(seed: int, eval_per_family: int) -> tuple[list[Task], list[Task]]:
    """Held-out evaluation tasks and the disjoint pool of tasks for training, per family."""
    rng = random.Random(seed)
    held_out: list[Task] = []
    training: list[Task] = []
    for family in FAMILIES:
        tasks = _distinct_tasks(family, rng, count=200)
        # At most half of a family is held out, so training still covers every family.
        count = min(eval_per_family, len(tasks) // 2)
        held_out += tasks[:count]
        training += tasks[count:]
    return held_out, training


def problem_record(task: Task, rng: random.Random) -> dict:
    return {
        "task_id": f"Synthetic/{task.entry_point}",
        "prompt": task.prompt,
        "canonical_solution": task.solution,
        "test": _unit_test(task, rng),
        "entry_point": task.entry_point,
        "family": task.family.name,
    }


def instruction_record(task: Task, style: str) -> dict:
    """The answer is always the whole function; the plain-completion style leaves the task to its
    docstring, which is how benchmark prompts are put to the model (see ``COMPLETION_INSTRUCTION``)."""
    instruction = style.format(signature=task.signature, description=task.description)
    return {"instruction": instruction, "input": "", "output": task.prompt + task.solution}


def _balanced_pairs(training: list[Task], count: int, rng: random.Random) -> list[tuple[Task, str]]:
    """``count`` distinct (task, instruction style) pairs, taken from the families in turn so that
    families with few distinct tasks are not crowded out."""
    queues = []
    for family in FAMILIES:
        pairs = [(task, style) for task in training if task.family is family for style in INSTRUCTION_STYLES]
        rng.shuffle(pairs)
        queues.append(pairs)
    chosen: list[tuple[Task, str]] = []
    while len(chosen) < count and any(queues):
        chosen += [queue.pop() for queue in queues if queue][:count - len(chosen)]
    rng.shuffle(chosen)
    return chosen


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """Leaves an identical file untouched: its unchanged mtime lets cached work downstream be reused."""
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_embedded_world(output_dir: str, seed: int = 0, eval_per_family: int = 4,
                         n_instructions: int = 2400) -> dict[str, str]:
    """Writes problems, instructions and the pretraining corpus; returns their paths by name."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    held_out, training = split_tasks(seed, eval_per_family)
    instructions = [instruction_record(task, style) for task, style in _balanced_pairs(training, n_instructions, rng)]
    pretrain = [{"text": format_prompt(row["instruction"], row["input"]) + row["output"]}
                for row in instructions if _family_of(row) in PRETRAIN_FAMILIES]
    pretrain += [{"text": task.bare_code} for task in training]
    paths = {"problems": out / "problems.jsonl", "instructions": out / "instructions.jsonl",
             "pretrain_corpus": out / "pretrain_corpus.jsonl"}
    _write_jsonl(paths["problems"], [problem_record(task, rng) for task in held_out])
    _write_jsonl(paths["instructions"], instructions)
    _write_jsonl(paths["pretrain_corpus"], pretrain)
    return {name: str(path) for name, path in paths.items()}


def _family_of(row: dict) -> str:
    name = row["output"].split("(", 1)[0].removeprefix("def ")
    return next(f.name for f in FAMILIES if name.startswith(f.name + "_"))
