import pytest

from data_pipeline import templates
from data_pipeline.synthetic_tasks import COMPLETION_INSTRUCTION
from eval import prompting
from eval.prompting import (DEFAULT_RATIONALE, ExtractedCode, answer_start, extract_code, few_shot_conversation,
                            few_shot_prompt)
from eval.sandbox import build_program

BELOW_ZERO = {
    "task_id": "HumanEval/3", "language": "python", "kind": "function", "entry_point": "below_zero",
    "prompt": 'from typing import List\n\n\ndef below_zero(operations: List[int]) -> bool:\n'
              '    """Return True if the running balance ever drops below zero."""\n',
    "canonical_solution": "    balance = 0\n    for op in operations:\n        balance += op\n"
                          "        if balance < 0:\n            return True\n    return False\n",
    "test": "def check(candidate):\n    assert candidate([1, 2, -4, 5])\n    assert not candidate([1, 2, -3])\n",
}
STDIO = {"task_id": "stdio/sum", "language": "python", "kind": "stdio",
         "prompt": "Read two integers and print their sum.", "tests": [{"input": "1 2\n", "output": "3\n"}],
         "compare": "whitespace"}
SHOTS = [
    {"instruction": "Write a Python function `add(a, b)` that returns a plus b.", "input": "",
     "output": "def add(a, b):\n    return a + b\n"},
    {"instruction": "Implement `is_even(n)`.", "input": "",
     "output": "Here it is:\n\n```python\ndef is_even(n):\n    return n % 2 == 0\n```\n"},
    {"instruction": "Return the last element of a list.", "input": "",
     "output": "def last(xs):\n    return xs[-1]\n"},
]
BODY = "    balance = 0\n    for op in operations:\n        balance += op\n        if balance < 0:\n" \
       "            return True\n    return False\n"
FULL = "def below_zero(operations: List[int]) -> bool:\n" + BODY


def test_the_alpaca_templates_are_the_ones_the_models_were_trained_on():
    assert prompting.ALPACA_PROMPT == templates.ALPACA_PROMPT
    assert prompting.ALPACA_PROMPT_WITH_INPUT == templates.ALPACA_PROMPT_WITH_INPUT


@pytest.mark.parametrize("chain_of_thought", [False, True])
def test_the_conversation_holds_the_alpaca_prompts_blocks_as_turns(chain_of_thought):
    shots = [*SHOTS[:2], {"instruction": "Sum the numbers.", "input": "[1, 2]", "output": "def total(xs):\n    return sum(xs)\n"}]
    messages = few_shot_conversation(BELOW_ZERO, shots, chain_of_thought=chain_of_thought)
    prompt = few_shot_prompt(BELOW_ZERO, shots, style="instruct", chain_of_thought=chain_of_thought)

    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    instruction = shots[2]["instruction"]
    if chain_of_thought:
        instruction += "\n\n" + prompting.chain_of_thought_request("python")
    assert messages[4]["content"] == templates.user_message(instruction, "[1, 2]")  # as in training's chat turns
    assert ("step by step" in messages[4]["content"]) == chain_of_thought
    for message in messages[:-1]:
        assert message["content"].split("\n\n[1, 2]")[0] in prompt
    assert messages[-1]["content"] in prompt
    assert prompt.endswith(answer_start(BELOW_ZERO, chain_of_thought))
    assert answer_start(BELOW_ZERO, chain_of_thought) == ("" if chain_of_thought else BELOW_ZERO["prompt"])


def test_zero_shot_instruct_prompt_is_the_fine_tuning_evaluation_prompt():
    prompt = few_shot_prompt(BELOW_ZERO, [], style="instruct", chain_of_thought=False)
    assert prompt == templates.format_prompt(COMPLETION_INSTRUCTION) + BELOW_ZERO["prompt"]


def _blocks(prompt: str) -> tuple[str, list[tuple[str, str]]]:
    """The header and each (instruction, response) block of an Alpaca prompt."""
    header, *blocks = prompt.split("### Instruction:\n")
    return header, [tuple(block.split("\n\n### Response:\n")) for block in blocks]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_instruct_prompt_has_a_block_per_shot_and_the_answer_begun_by_the_code_prompt(k):
    prompt = few_shot_prompt(BELOW_ZERO, SHOTS[:k], style="instruct", chain_of_thought=False)
    header, blocks = _blocks(prompt)
    assert header == templates.ALPACA_PROMPT.split("### Instruction:")[0]
    assert len(blocks) == k + 1
    for shot, (instruction, response) in zip(SHOTS[:k], blocks):
        assert instruction == shot["instruction"]
        assert response == shot["output"].rstrip() + "\n\n"
    assert blocks[-1] == (COMPLETION_INSTRUCTION, BELOW_ZERO["prompt"])
    assert prompt.endswith('drops below zero."""\n')  # the model writes the body next


@pytest.mark.parametrize("k", [0, 1, 3])
def test_chain_of_thought_prompt_asks_for_reasoning_and_shows_it_in_every_shot(k):
    prompt = few_shot_prompt(BELOW_ZERO, SHOTS[:k], style="instruct", chain_of_thought=True)
    _, blocks = _blocks(prompt)
    assert len(blocks) == k + 1
    request = prompting.chain_of_thought_request("python")
    for shot, (instruction, response) in zip(SHOTS[:k], blocks):
        assert instruction == f"{shot['instruction']}\n\n{request}"
        assert response.startswith(DEFAULT_RATIONALE + "\n\n```python\ndef ")
        assert response.endswith("\n```\n\n") and response.count("```") == 2
    assert ("is_even(n):\n    return n % 2 == 0\n```\n\n" in prompt) == (k > 1)  # fenced once, not nested
    instruction, response = blocks[-1]
    assert instruction == f"{COMPLETION_INSTRUCTION}\n\n```python\n{BELOW_ZERO['prompt'].rstrip()}\n```\n\n{request}"
    assert response == "" and prompt.endswith("### Response:\n")  # the model reasons before any code


def test_a_shot_with_an_input_gets_the_input_template():
    shot = {"instruction": "Fix the bug.", "input": "def f(x):\n    return x +\n",
            "output": "def f(x):\n    return x\n"}
    prompt = few_shot_prompt(BELOW_ZERO, [shot, SHOTS[0]], style="instruct", chain_of_thought=False)
    assert prompt.startswith(templates.ALPACA_PROMPT_WITH_INPUT.split("### Instruction:")[0])
    assert prompt.count("Below is an instruction") == 1
    assert prompt.count("### Input:\n") == 1 and f"### Input:\n{shot['input']}\n\n### Response:\n" in prompt


def test_a_shot_may_bring_its_own_rationale():
    shot = {**SHOTS[0], "rationale": "Adding is the + operator."}
    prompt = few_shot_prompt(BELOW_ZERO, [shot], style="instruct", chain_of_thought=True)
    assert "### Response:\nAdding is the + operator.\n\n```python\ndef add(a, b):\n    return a + b\n```" in prompt


@pytest.mark.parametrize("k", [0, 1, 3])
def test_completion_prompt_is_the_shots_code_then_the_code_prompt(k):
    prompt = few_shot_prompt(BELOW_ZERO, SHOTS[:k], style="completion", chain_of_thought=False)
    assert prompt.endswith(BELOW_ZERO["prompt"])
    examples = prompt.removesuffix(BELOW_ZERO["prompt"])
    assert examples.count("def ") == k and "Here it is" not in examples and "```" not in examples
    assert examples == "".join(f"{code}\n\n\n" for code in [
        "def add(a, b):\n    return a + b",
        "def is_even(n):\n    return n % 2 == 0",
        "def last(xs):\n    return xs[-1]",
    ][:k])


def test_stdio_prompts_state_the_problem_and_ask_for_a_whole_program():
    instruct = few_shot_prompt(STDIO, SHOTS[:1], style="instruct", chain_of_thought=False)
    _, blocks = _blocks(instruct)
    assert blocks[-1][0].startswith(STDIO["prompt"] + "\n\nWrite a complete Python program")
    assert "```python fenced block" in blocks[-1][0] and instruct.endswith("### Response:\n")
    completion = few_shot_prompt(STDIO, [], style="completion", chain_of_thought=False)
    assert completion == "# Read two integers and print their sum.\n"


def test_chain_of_thought_needs_the_instruct_style_and_styles_are_checked():
    with pytest.raises(ValueError, match="instruct"):
        few_shot_prompt(BELOW_ZERO, [], style="completion", chain_of_thought=True)
    with pytest.raises(ValueError, match="unknown prompt style"):
        few_shot_prompt(BELOW_ZERO, [], style="chat", chain_of_thought=False)


IMPORTS = "from typing import List\n"
# (case, model answer, code to judge, is it a full program); all for BELOW_ZERO.
EXTRACTION_CASES = [
    ("body, then the next function the model began", BODY + "\n\ndef check(candidate):\n    pass\n", BODY, False),
    ("body, then test code", BODY + "\n\nprint(below_zero([1, -2]))\n", BODY, False),
    ("body closed by a fence, then prose", BODY + "```\n\nThis keeps a running balance.", BODY, False),
    ("the prompt echoed, then the body", BELOW_ZERO["prompt"] + BODY, BODY, False),
    ("body in a fence", f"```python\n{BODY}```", BODY, False),
    ("body and a test in a fence", f"```python\n{BODY}\nprint(below_zero([1, -2]))\n```", BODY, False),
    ("full function fenced, prose around",
     f"Sure! Here is the implementation:\n\n```python\n{FULL}```\n\nIt returns as soon as the balance is negative.",
     IMPORTS + FULL, True),
    ("full function with its own import", f"```python\n{IMPORTS}\n{FULL}```", f"{IMPORTS}\n{FULL}", True),
    ("CRLF line ends", f"Answer:\n```python\n{FULL}```\n".replace("\n", "\r\n"), IMPORTS + FULL, True),
    ("unterminated fence: out of tokens", f"```python\n{FULL}    # the end", IMPORTS + FULL + "    # the end\n", True),
    ("py tag", f"```py\n{FULL}```", IMPORTS + FULL, True),
    ("untagged fence", f"```\n{FULL}```", IMPORTS + FULL, True),
    ("a draft, then the corrected function",
     f"```python\ndef below_zero(operations):\n    return False\n```\nOops, fixed:\n```python\n{FULL}```",
     IMPORTS + FULL, True),
    ("the function, then a usage example",
     f"```python\n{FULL}```\nUsage:\n```python\nprint(below_zero([1, -2]))\n```", IMPORTS + FULL, True),
    ("the function, then its output in a text block",
     f"```python\n{FULL}```\n```text\nTrue\n```", IMPORTS + FULL, True),
    ("chain of thought, then a made-up next shot",
     f"Step 1: keep a running sum. Step 2: return True once it is negative.\n\n```python\n{FULL}```\n\n"
     "### Instruction:\nWrite `add`.\n\n### Response:\n```python\ndef add(a, b):\n    return a + b\n```",
     IMPORTS + FULL, True),
    ("unfenced function with prose before and a test after",
     f"Here is my solution:\n\n{FULL}\n\nprint(below_zero([1, -5]))\n", IMPORTS + FULL, True),
]


@pytest.mark.parametrize("answer, code, is_full_program", [case[1:] for case in EXTRACTION_CASES],
                         ids=[case[0] for case in EXTRACTION_CASES])
def test_extract_code(answer, code, is_full_program):
    extracted = extract_code(answer, BELOW_ZERO)
    assert extracted == ExtractedCode(code, is_full_program)
    problem, completion = extracted.for_sandbox(BELOW_ZERO)
    exec(build_program(problem, completion), {})  # our own strings: the judged program runs and passes


def test_full_programs_are_judged_without_the_prompt():
    full = extract_code(f"```python\n{FULL}```", BELOW_ZERO)
    assert full.for_sandbox(BELOW_ZERO) == ({**BELOW_ZERO, "prompt": ""}, full.code)
    body = extract_code(BODY, BELOW_ZERO)
    assert body.for_sandbox(BELOW_ZERO) == (BELOW_ZERO, BODY)


PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.mark.parametrize("answer, code", [
    (f"Read both numbers and add them.\n\n```python\n{PROGRAM}```\n", PROGRAM),
    (PROGRAM, PROGRAM),  # unfenced: the text as it is, print and all
    (f"```python\nimport sys\n```\n\nBetter:\n\n```python\n{PROGRAM}```", PROGRAM),
])
def test_stdio_answers_are_whole_programs(answer, code):
    assert extract_code(answer, STDIO) == ExtractedCode(code, True)


def _multipl_e(language: str, prompt: str, stop_tokens: list[str]) -> dict:
    return {"task_id": "HumanEval_53_add", "language": language, "kind": "function", "entry_point": None,
            "prompt": prompt, "stop_tokens": stop_tokens}


# As in MultiPL-E: the tests begin with the function's closing brace, so a body must stop before it.
CPP = _multipl_e("cpp", "#include<assert.h>\n// Add two numbers\nlong add(long x, long y) {\n", ["\n}"])
JAVA = _multipl_e("java", "class Problem {\n    // Add two numbers\n    public static long add(long x, long y) {\n",
                  ["\n    }\n"])
JS = _multipl_e("js", "//Add two numbers\nfunction add(x, y){\n", ["\nfunction ", "\n/*", "\n//", "\nconsole.log"])
CPP_BODY, JAVA_BODY, JS_BODY = "    return x + y;\n", "        return x + y;\n", "  return x + y;\n"
NESTED_JS_BODY = "  if (x > 0) {\n    return x + y;\n  }\n  return y + x;\n"  # an inner brace does not end it


@pytest.mark.parametrize("problem, answer, body", [
    (CPP, "    return x + y;\n}\n\nint main() {}\n", CPP_BODY),
    (CPP, "```cpp\n#include <cstdio>\nlong add(long x, long y) {\n    return x + y;\n}\n```", CPP_BODY),
    (CPP, "```python\nprint(1)\n```\n```c++\n    return x + y;\n}\n```", CPP_BODY),
    (JAVA, "```java\nclass Problem {\n    public static long add(long x, long y) {\n        return x + y;\n"
           "    }\n}\n```", JAVA_BODY),
    (JAVA, "```java\npublic static long add(long x, long y) {\n        return x + y;\n}\n```", JAVA_BODY),
    (JS, "```javascript\nfunction add(x, y){\n  return x + y;\n}\n```", JS_BODY),
    (JS, "  return x + y;\n}\n\nconsole.log(add(1, 2));\n", JS_BODY),
    (JS, NESTED_JS_BODY + "}\n", NESTED_JS_BODY),
], ids=["cpp body", "cpp function", "c++ tag", "java class", "java method", "js function", "js body", "js nested"])
def test_other_languages_give_the_body_the_prompt_needs(problem, answer, body):
    assert extract_code(answer, problem, language=problem["language"]) == ExtractedCode(body, False)


LIVECODEBENCH = {
    "task_id": "lcb/add", "language": "python", "kind": "function", "entry_point": None,
    "prompt": "# Add a and b.\n\nfrom typing import *\n\n"
              "class Solution:\n    def add(self, a: int, b: int) -> int:\n        ",  # ends in the body's indentation
    "test": "assert Solution().add(2, 3) == 5\n",
}
MBPP = {"task_id": "Mbpp/1", "language": "python", "kind": "function", "entry_point": None,
        "prompt": "# Write a function to find the square root of the sum of two squares.\n# assert hypot(3, 4) == 5\n",
        "test": "assert hypot(3, 4) == 5\n"}


@pytest.mark.parametrize("problem, answer, code", [
    (LIVECODEBENCH, "```python\nclass Solution:\n    def add(self, a: int, b: int) -> int:\n        total = a + b\n"
                    "        return total\n```", "total = a + b\n        return total\n"),
    (MBPP, "```python\nimport math\n\ndef hypot(a, b):\n    return math.sqrt(a * a + b * b)\n```",
     "import math\n\ndef hypot(a, b):\n    return math.sqrt(a * a + b * b)\n"),
], ids=["livecodebench starter", "mbpp"])
def test_python_problems_without_an_entry_point_continue_their_prompt(problem, answer, code):
    extracted = extract_code(answer, problem)
    assert extracted == ExtractedCode(code, False)
    exec(build_program(problem, extracted.code), {})
