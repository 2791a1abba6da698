import typing

import pytest

from data_pipeline import code_languages
from data_pipeline.code_languages import (
    LANGUAGES,
    canonical_language,
    candidate_languages,
    code_parses,
    detect_language,
    has_grammar,
    response_code_parses,
    response_in_languages,
)
from data_pipeline.config import CodeLanguage

SNIPPETS = {
    "python": "def double(xs):\n    return [x * 2 for x in xs]\n",
    "cpp": (
        "#include <vector>\n\n"
        "int total(const std::vector<int>& v) {\n    int s = 0;\n    for (int x : v) s += x;\n    return s;\n}\n"
    ),
    "java": (
        "public class Main {\n    public static void main(String[] args) {\n"
        "        System.out.println(\"hi\");\n    }\n}\n"
    ),
    "javascript": "const add = (a, b) => a + b;\nconsole.log(add(1, 2));\n",
}
BROKEN = {
    "python": (  # an unclosed parenthesis
        "def double(xs):\n    result = []\n    for x in xs:\n        result.append(x * 2\n    return result\n"
    ),
    "cpp": SNIPPETS["cpp"].replace("int s = 0;", "int s = 0"),  # no semicolon
    "java": SNIPPETS["java"].replace('println("hi");', 'println("hi")'),
    "javascript": "const add = (a, b) => {\n  return a + b;\n\nconsole.log(add(1, 2));\n",  # unclosed brace
}


def test_languages_match_the_config_literal():
    assert LANGUAGES == typing.get_args(CodeLanguage)


@pytest.mark.parametrize("language", LANGUAGES)
def test_valid_code_parses_only_in_its_language(language):
    assert [code_parses(SNIPPETS[language], other) for other in LANGUAGES] == [
        other == language for other in LANGUAGES
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_broken_code_parses_in_no_language(language):
    assert not any(code_parses(BROKEN[language], other) for other in LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_detects_valid_and_broken_code(language):
    assert detect_language(SNIPPETS[language]) == language
    assert detect_language(BROKEN[language]) == language  # the fewest error nodes


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("x = 1", None),  # Python and JavaScript both parse it: a tie
        ("It reverses the list and returns it.", None),  # prose: errors under every grammar
        ("", None),
        ("Here:\n```js\nx = 1\n```", "javascript"),  # the tag wins over the tie
        ("```C++\nnot even code\n```", "cpp"),
        ("```bash\nls -l\n```\n```\nconst f = (a) => a;\nf(1);\n```", "javascript"),  # no grammar: detected
        ("Use this:\n```\n" + SNIPPETS["java"] + "```\nIt prints hi.", "java"),
    ],
)
def test_detect_language_ties_prose_and_fence_tags(text, language):
    assert detect_language(text) == language


def test_candidates_of_a_tie():
    assert candidate_languages("x = 1") == ["python", "javascript"]


def test_aliases_and_python_via_ast():
    assert [canonical_language(name) for name in ("C++", " JS ", "py", "Java", "", None)] == [
        "cpp", "javascript", "python", "java", None, None,
    ]
    assert code_parses("s = '\\d'", "py") and not code_parses("x = '\0'", "Python")


def test_a_language_without_grammar_is_a_clear_error():
    assert not has_grammar("rust") and has_grammar("C++")
    with pytest.raises(ValueError, match=r"no tree-sitter grammar registered for language 'rust'.*tree-sitter-rust"):
        code_parses("fn main() {}", "rust")


def test_a_grammar_not_installed_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(code_languages.GRAMMARS, "cpp", ("tree_sitter_not_installed_cpp", "tree-sitter-cpp"))
    code_languages._parser.cache_clear()
    code_languages.has_grammar.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"grammar for cpp is not installed: pip install 'tree-sitter-cpp<0.23'"):
            code_parses("int x;", "cpp")
        assert not has_grammar("cpp")
    finally:
        code_languages._parser.cache_clear()
        code_languages.has_grammar.cache_clear()


@pytest.mark.parametrize(
    ("response", "language", "parses"),
    [
        (SNIPPETS["cpp"], "C++", True),
        (BROKEN["cpp"], "C++", False),  # checked, no longer exempted
        ("```java\n" + BROKEN["java"] + "```", None, False),  # the tag names the language
        ("```python\nx = (\n```", "java", False),  # the tag beats the row's language
        (SNIPPETS["javascript"], None, True),  # no language: parses as one of them
        (BROKEN["javascript"], None, False),
        ("Sure! Here it is: x = 1", None, False),
        ("```sql\nSELECT FROM;\n```", None, True),  # no grammar for SQL: not checked
        ("SELECT FROM;", "SQL", True),
    ],
)
def test_response_code_parses(response, language, parses):
    assert response_code_parses(response, language) is parses


@pytest.mark.parametrize(
    ("response", "language", "languages", "kept"),
    [
        (SNIPPETS["java"], None, ["java"], True),
        (SNIPPETS["java"], None, ["python", "cpp"], False),
        (BROKEN["cpp"], None, ["cpp"], True),  # broken C++ is still C++
        ("x = 1", None, ["javascript"], True),  # a tie with an allowed language
        ("x = 1", None, ["cpp"], False),
        ("anything", "Java", ["java"], True),  # the row's language column
        ("```bash\nls\n```", None, ["python"], False),
        ("Use this:\nreturn xs[::-1]", None, ["python"], True),  # unfenced: its code lines
        ("It reverses the list.", None, ["cpp"], True),  # prose only: no code to judge
    ],
)
def test_response_in_languages(response, language, languages, kept):
    assert response_in_languages(response, languages, language) is kept
