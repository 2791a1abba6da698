"""Few-shot and chain-of-thought prompts for benchmark problems, and the code to judge in a model's answer.

Prompt styles:

- ``instruct``: Alpaca blocks, the format the fine-tuned models learnt: the header, one
  instruction/response block per shot, then the problem's block. Without chain of thought a
  function problem's answer is begun with its code prompt, so the model writes the body; the
  zero-shot prompt is then exactly the one used to score fine-tuned models
  (``ALPACA_PROMPT`` with "Complete the following Python function." followed by the code prompt).
  ``few_shot_conversation`` gives the same content as chat turns, for a model's chat template.
- ``completion``: bare code for base models: each shot's code, then the problem's code prompt.

Answers come back in many shapes (fenced or not, body or whole function, prose around, cut off
by the token limit); ``extract_code`` turns each into code for ``eval.sandbox.check_completion``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import takewhile
from typing import Literal

from eval.generate import STOP_SEQUENCES, truncate_at_stop

# Must match data_pipeline.templates.ALPACA_PROMPT and ALPACA_PROMPT_WITH_INPUT character for character
# (tests/eval/test_eval_prompting.py checks): the fine-tuned models were trained on those strings, and
# eval/ does not import data_pipeline/.
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_INSTRUCTION_HEADING = "### Instruction:"

LANGUAGE_NAMES = {"python": "Python", "cpp": "C++", "java": "Java", "js": "JavaScript"}
# Info strings that mark a fenced block as a language's code; prompts use the first. Untagged blocks count too.
FENCE_TAGS = {"python": ("python", "py", "python3"), "cpp": ("cpp", "c++", "cc", "cxx"),
              "java": ("java",), "js": ("javascript", "js", "node")}
_LINE_COMMENTS = {"python": "#", "cpp": "//", "java": "//", "js": "//"}
# The reasoning line of a chain-of-thought shot, unless the pool row has a "rationale" of its own.
DEFAULT_RATIONALE = "Let me work out step by step what the code has to do, then write it."

_FENCE = re.compile(r"^\s*```+\s*([^\s`]*)")
_NEXT_ALPACA_TURN = re.compile(r"^" + re.escape(_INSTRUCTION_HEADING), re.MULTILINE)
# Where an unfenced whole Python program ends: the test code models like to add after it.
_PYTHON_PROGRAM_STOPS = ("\nif __name__", "\nprint(", "\nassert ")
_PYTHON_TOP_LEVEL_CODE = re.compile(r"^(?:(?:import|from|def|async|class)\s|@)", re.MULTILINE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_PYTHON_IMPORT = re.compile(r"^(?:from\s+\S+\s+)?import\s.*$", re.MULTILINE)


def few_shot_prompt(problem: dict, shots: list[dict], *, style: Literal["instruct", "completion"],
                    chain_of_thought: bool) -> str:
    """The prompt for ``problem`` with ``shots`` (pool rows) as worked examples before it.

    The text ends exactly where the model's answer begins. With ``chain_of_thought`` (instruct
    only: a base model continuing code does not reason in prose first) the problem, and each
    shot, asks for reasoning first and the final code in one fenced block, and each shot's
    answer shows that: a reasoning line, then its code fenced.
    """
    if style == "completion":
        if chain_of_thought:
            raise ValueError("chain_of_thought needs style 'instruct'")
        return _completion_prompt(problem, shots)
    if style == "instruct":
        return _instruct_prompt(problem, shots, chain_of_thought)
    raise ValueError(f"unknown prompt style {style!r}; allowed: instruct, completion")


def _instruct_prompt(problem: dict, shots: list[dict], chain_of_thought: bool) -> str:
    language = _language(problem)
    template = ALPACA_PROMPT_WITH_INPUT if any(shot["input"].strip() for shot in shots) else ALPACA_PROMPT
    header = template[:template.index(_INSTRUCTION_HEADING)]
    examples = "".join(
        _alpaca_block(_shot_instruction(shot, language, chain_of_thought), shot["input"])
        + _shot_answer(shot, language, chain_of_thought) + "\n\n"
        for shot in shots
    )
    return (header + examples + _alpaca_block(problem_instruction(problem, chain_of_thought), "")
            + answer_start(problem, chain_of_thought))


def few_shot_conversation(problem: dict, shots: list[dict], *, chain_of_thought: bool) -> list[dict[str, str]]:
    """The ``instruct`` prompt as chat messages, for a model's chat template: a user turn and the
    assistant's answer per shot, then the problem's user turn. Render it with the generation
    prompt and append ``answer_start``: the same content as ``few_shot_prompt``, in turns."""
    language = _language(problem)
    messages = []
    for shot in shots:
        messages.append({"role": "user", "content": _user_message(
            _shot_instruction(shot, language, chain_of_thought), shot["input"])})
        messages.append({"role": "assistant", "content": _shot_answer(shot, language, chain_of_thought)})
    messages.append({"role": "user", "content": problem_instruction(problem, chain_of_thought)})
    return messages


def answer_start(problem: dict, chain_of_thought: bool) -> str:
    """What begins an instruct answer: a function problem's code prompt (the model writes the
    body), or nothing when the model reasons first or writes a whole program."""
    return problem["prompt"] if _is_function(problem) and not chain_of_thought else ""


def _user_message(instruction: str, input: str) -> str:
    # As data_pipeline.templates.user_message lays out a chat user turn in training.
    return f"{instruction}\n\n{input}" if input.strip() else instruction


def problem_instruction(problem: dict, chain_of_thought: bool) -> str:
    """The instruction that puts ``problem`` to an instruct model.

    A function problem without chain of thought says only "Complete the following <language>
    function.": the answer is begun with the code prompt. Otherwise the instruction holds the
    whole problem (the code prompt fenced, or the stdio statement).
    """
    language = _language(problem)
    name = LANGUAGE_NAMES[language]
    if _is_function(problem):
        instruction = f"Complete the following {name} function."
        if not chain_of_thought:
            return instruction
        return f"{instruction}\n\n```{_fence_tag(language)}\n{problem['prompt'].rstrip()}\n```\n\n" + \
            chain_of_thought_request(language)
    instruction = (f"{problem['prompt'].strip()}\n\nWrite a complete {name} program that reads standard input "
                   "and writes standard output.")
    if chain_of_thought:
        return f"{instruction}\n\n{chain_of_thought_request(language)}"
    return f"{instruction} Give the code in a single ```{_fence_tag(language)} fenced block."


def chain_of_thought_request(language: str) -> str:
    return (f"Think step by step: first explain briefly how to solve it, then give the final code "
            f"in a single ```{_fence_tag(language)} fenced block.")


def _alpaca_block(instruction: str, input: str) -> str:
    """One instruction/response block as the Alpaca template lays it out, without the header."""
    template = ALPACA_PROMPT_WITH_INPUT if input.strip() else ALPACA_PROMPT
    return template[template.index(_INSTRUCTION_HEADING):].format(instruction=instruction, input=input)


def _shot_instruction(shot: dict, language: str, chain_of_thought: bool) -> str:
    if chain_of_thought:
        return f"{shot['instruction']}\n\n{chain_of_thought_request(language)}"
    return shot["instruction"]


def _shot_answer(shot: dict, language: str, chain_of_thought: bool) -> str:
    if chain_of_thought:
        rationale = shot.get("rationale", DEFAULT_RATIONALE)
        return f"{rationale}\n\n```{_fence_tag(language)}\n{shot_code(shot['output'], language)}\n```"
    return shot["output"].rstrip()


def _completion_prompt(problem: dict, shots: list[dict]) -> str:
    """Each shot's code, two blank lines apart, then the problem's code prompt (a stdio problem's
    statement as comments) for the model to continue."""
    language = _language(problem)
    examples = "".join(shot_code(shot["output"], language) + "\n\n\n" for shot in shots)
    if _is_function(problem):
        return examples + problem["prompt"]
    marker = _LINE_COMMENTS[language]
    return examples + "".join(f"{marker} {line}".rstrip() + "\n" for line in problem["prompt"].strip().split("\n"))


def shot_code(output: str, language: str) -> str:
    """A shot's code: the last fenced block of its answer in ``language``, else the whole answer,
    without surrounding blank lines."""
    blocks = _fenced_blocks(output.replace("\r\n", "\n"), language)
    return (blocks[-1] if blocks else output).strip("\n")


@dataclass(frozen=True)
class ExtractedCode:
    """The code to judge from a model's answer, and whether it stands alone.

    ``is_full_program`` false: ``code`` continues the problem's prompt (a function body), judged as
    prompt + code like any completion. True: ``code`` is the whole program and is judged without the
    prompt: every stdio answer, and a Python answer that defines the entry point function itself.
    ``for_sandbox`` applies the rule.
    """

    code: str
    is_full_program: bool

    def for_sandbox(self, problem: dict) -> tuple[dict, str]:
        """The (problem, completion) to hand ``eval.sandbox.check_completion``."""
        return ({**problem, "prompt": ""} if self.is_full_program else problem), self.code


def extract_code(answer: str, problem: dict, *, language: str = "python") -> ExtractedCode:
    """The code to run from a model's ``answer``: the generated text, or the problem's prompt + it.

    The code is the last fenced block in ``language`` (tagged with one of its ``FENCE_TAGS`` or
    untagged) that holds the problem's function, else the last such block, else the answer
    itself; a fence the token limit left open runs to the end. Then, for a function problem:

    - Python code that defines the entry point is a full program. It gets the prompt's import
      lines it lacks put first (answers use ``List`` without importing it); unfenced, it starts
      at its first line of code and ends before the test code models add after it.
    - Code that repeats the prompt's last line (a MultiPL-E or LiveCodeBench signature) gives
      the body after that line.
    - An answer or block that starts inside the function (an indented body, as when the prompt
      began the answer) is a body; an unfenced one ends at the fence that closes it.
    - Other code (say, a function after MBPP's prompt of comments) is kept whole.

    A body is cut at the problem's stop tokens (HumanEval's for Python) and, in a brace language,
    before the function's closing brace, which MultiPL-E tests begin with. CRLF line ends become
    LF; a next "### Instruction:" block the model made up is cut off. The code loses leading blank
    lines and trailing whitespace, and ends in one newline.
    """
    text = _answer_text(answer, problem)
    if not _is_function(problem):
        blocks = _fenced_blocks(text, language)
        return ExtractedCode(_tidy(blocks[-1] if blocks else text), True)
    if _starts_inside_code(text):
        return _body(text, problem, language)
    blocks = _fenced_blocks(text, language)
    code = ([block for block in blocks if _holds_function(block, problem)] or blocks or [text])[-1]
    if _defines_entry_point(code, problem):
        program = code if blocks else _unfenced_program(code)
        return ExtractedCode(_tidy(_with_prompt_imports(program, problem["prompt"])), True)
    after_signature = _after_signature(code, problem)
    if after_signature is not None:
        return _body(after_signature, problem, language)
    if _starts_inside_code(code):
        return _body(code, problem, language)
    return ExtractedCode(_tidy(code), False)


def _answer_text(answer: str, problem: dict) -> str:
    text = answer.replace("\r\n", "\n")
    next_turn = _NEXT_ALPACA_TURN.search(text)
    if next_turn:
        text = text[:next_turn.start()]
    return text.removeprefix(problem["prompt"])


def _starts_inside_code(text: str) -> bool:
    """Whether the first non-blank line is indented code (not a fence): the answer continues a function."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    return first[:1] in (" ", "\t") and not _FENCE.match(first)


def _fenced_blocks(text: str, language: str) -> list[str]:
    """The non-empty fenced blocks tagged ``language`` or untagged, in order."""
    blocks, tag, lines = [], None, []
    for line in text.split("\n"):
        fence = _FENCE.match(line)
        if tag is None:
            if fence:
                tag, lines = fence.group(1).lower(), []
        elif fence and not fence.group(1):
            blocks.append((tag, lines))
            tag = None
        else:
            lines.append(line)
    if tag is not None:  # never closed: the model ran out of tokens
        blocks.append((tag, lines))
    wanted = ("", *FENCE_TAGS.get(language, (language,)))
    return ["\n".join(lines) + "\n" for tag, lines in blocks if tag in wanted and "".join(lines).strip()]


def _holds_function(code: str, problem: dict) -> bool:
    return _defines_entry_point(code, problem) or _after_signature(code, problem) is not None


def _defines_entry_point(code: str, problem: dict) -> bool:
    """Whether ``code`` defines the problem's entry point at top level (Python)."""
    entry_point = problem.get("entry_point")
    return bool(entry_point) and re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code,
                                           re.MULTILINE) is not None


def _after_signature(code: str, problem: dict) -> str | None:
    """For a problem without an entry point, the code after the line that repeats the prompt's last
    line (its signature, in MultiPL-E and LiveCodeBench prompts); None if no line does."""
    signature = _last_line(problem["prompt"]).strip()
    if problem.get("entry_point") or not signature:
        return None
    lines = code.split("\n")
    repeated = next((index for index, line in enumerate(lines) if line.strip() == signature), None)
    return None if repeated is None else "\n".join(lines[repeated + 1:])


def _body(code: str, problem: dict, language: str) -> ExtractedCode:
    """A function body, up to the problem's stop tokens or a closing fence and, in a brace language,
    to the function's own closing brace (one no more indented than the prompt's signature line)."""
    stops = tuple(problem.get("stop_tokens") or (STOP_SEQUENCES if language == "python" else ()))
    lines = truncate_at_stop(code, (*stops, "\n```")).split("\n")
    if language != "python":
        indent = _indent(_last_line(problem["prompt"]))
        lines = list(takewhile(lambda line: not (line.lstrip().startswith("}") and _indent(line) <= indent), lines))
    body = _tidy("\n".join(lines))
    # A prompt that ends in the body's indentation (LiveCodeBench starter code) already indents the first line.
    return ExtractedCode(body.lstrip(" \t") if _ends_in_indentation(problem["prompt"]) else body, False)


def _last_line(text: str) -> str:
    return next((line for line in reversed(text.split("\n")) if line.strip()), "")


def _ends_in_indentation(prompt: str) -> bool:
    tail = prompt.rpartition("\n")[2]
    return bool(tail) and not tail.strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _unfenced_program(text: str) -> str:
    """A whole Python program given without a fence: from its first line of code to the test code after it."""
    start = _PYTHON_TOP_LEVEL_CODE.search(text).start()  # there is one: the text defines the entry point
    return truncate_at_stop(text[start:], (*_PYTHON_PROGRAM_STOPS, "\n```"))


def _with_prompt_imports(code: str, prompt: str) -> str:
    present = set(code.split("\n"))
    missing = [line for line in _PYTHON_IMPORT.findall(prompt) if line not in present]
    return "".join(line + "\n" for line in missing) + code


def _tidy(code: str) -> str:
    """The code without leading blank lines or trailing whitespace, ending in one newline."""
    return _LEADING_BLANK_LINES.sub("", code).rstrip() + "\n"


def _language(problem: dict) -> str:
    return problem.get("language", "python")


def _is_function(problem: dict) -> bool:
    return problem.get("kind", "function") == "function"


def _fence_tag(language: str) -> str:
    return FENCE_TAGS[language][0]
