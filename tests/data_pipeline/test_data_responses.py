import pytest

from data_pipeline.responses import code_blocks, code_lines, is_prose_only, looks_like_code, prose, python_parses

FENCED = "Use a slice:\n```python\ndef rev(xs):\n    # newest first\n    return xs[::-1]\n```\nIt copies the list."


def test_code_blocks_prose_and_code_lines_of_a_fenced_answer():
    assert code_blocks(FENCED) == [("python", "def rev(xs):\n    # newest first\n    return xs[::-1]\n")]
    assert prose(FENCED).split() == ["Use", "a", "slice:", "It", "copies", "the", "list."]
    assert code_lines(FENCED) == ["def rev(xs):", "    # newest first", "    return xs[::-1]"]


def test_unfenced_answer_is_split_into_code_and_prose_lines():
    answer = "First sort the list.\nxs.sort()\nresult = xs[0]\nThat gives the minimum."
    assert code_lines(answer) == ["xs.sort()", "result = xs[0]"]
    assert prose(answer) == "First sort the list.\nThat gives the minimum."


@pytest.mark.parametrize(
    ("line", "is_code"),
    [
        ("return x + 1", True),
        ("for i in range(3):", True),
        ("print(x)", True),
        ("int main() {", True),
        ("SELECT * FROM users;", True),
        ("<div class='a'>", True),
        ("This reverses the list.", False),
        ("Hello", False),
        ("42", False),
        ("Note: it is slow", False),
    ],
)
def test_looks_like_code(line, is_code):
    assert looks_like_code(line) is is_code


def test_prose_only():
    assert is_prose_only("The function reverses a list.\n1. Take the list\n2. Reverse it.")
    assert not is_prose_only("Use this:\nreturn xs[::-1]")
    assert not is_prose_only("```\nreverse(xs)\n```")


@pytest.mark.parametrize(
    ("response", "language", "parses"),
    [
        ("def f(x):\n    return x", None, True),
        ("def f(x:\n    return x", None, False),
        (FENCED, None, True),
        ("Try this:\n```py\ndef f(:\n```", None, False),
        ("```\nx = 1\n```\nand\n```python\ny = (\n```", None, False),
        ("Java:\n```java\nint x = ;\n```", None, True),  # only Python blocks are checked
        ("int x = ;", "java", True),  # the row's language exempts it
        ("int x = ;", "Python", False),
        ("s = '\\d'", None, True),  # invalid escape: a warning, not an error
        ("x = '\0'", None, False),  # a null byte: rejected, not raised
    ],
)
def test_python_parses(response, language, parses):
    assert python_parses(response, language) is parses
