import os

import pytest

from eval.benchmarks import load_humaneval

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOY_PROBLEMS = os.path.join(FIXTURES, "toy_problems.jsonl")


@pytest.fixture(scope="session")
def humaneval() -> dict[str, dict]:
    return load_humaneval()


@pytest.fixture(scope="session")
def toy_problems_path() -> str:
    """Two tiny problems, toy/add and toy/is_even, fast to judge."""
    return TOY_PROBLEMS


@pytest.fixture(scope="session")
def toy_problems(toy_problems_path) -> dict[str, dict]:
    return load_humaneval(toy_problems_path)
