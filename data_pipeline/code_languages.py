"""Which language a piece of code is in, and whether it parses: Python with ``ast`` (as the
interpreter would), C++/Java/JavaScript with tree-sitter (a tree with no ERROR or MISSING node).

Language names are canonical (``LANGUAGES``); ``canonical_language`` maps the usual spellings
of fence tags and ``language`` columns ("C++", "js", "py", ...) onto them.
"""

import importlib
from dataclasses import dataclass
from functools import cache

import tree_sitter

from data_pipeline.responses import code_blocks, code_lines, is_prose_only, parse_python

# Canonical language -> its tree-sitter grammar: (module, pip package).
GRAMMARS = {
    "python": ("tree_sitter_python", "tree-sitter-python"),
    "cpp": ("tree_sitter_cpp", "tree-sitter-cpp"),
    "java": ("tree_sitter_java", "tree-sitter-java"),
    "javascript": ("tree_sitter_javascript", "tree-sitter-javascript"),
}
LANGUAGES = tuple(GRAMMARS)
_ALIASES = {
    "py": "python", "python3": "python", "py3": "python",
    "c++": "cpp", "cxx": "cpp", "cc": "cpp", "hpp": "cpp",
    "js": "javascript", "node": "javascript", "nodejs": "javascript", "mjs": "javascript", "jsx": "javascript",
}


@dataclass(frozen=True)
class ParseErrors:
    """How badly one grammar parses some code: ERROR/MISSING nodes, and the lines holding them."""

    nodes: int
    lines: int


def canonical_language(name: str | None) -> str | None:
    """The canonical name of a language tag or column value ("C++" -> "cpp"); None for no name."""
    if name is None or not name.strip():
        return None
    folded = name.strip().casefold()
    return _ALIASES.get(folded, folded)


@cache
def has_grammar(language: str | None) -> bool:
    """Whether ``code_parses`` can check this language (its grammar is registered and installed)."""
    canonical = canonical_language(language)
    if canonical not in GRAMMARS:
        return False
    try:
        _parser(canonical)
    except ImportError:
        return False
    return True


def code_parses(code: str, language: str) -> bool:
    """Whether ``code`` parses as ``language``: Python via ``ast``, others via tree-sitter.

    Raises a ValueError for a language with no registered grammar and an ImportError naming
    the pip package when its grammar is not installed.
    """
    canonical = canonical_language(language)
    if canonical == "python":
        return parse_python(code) is not None
    return not _tree(code, _checked(language)).root_node.has_error


def parse_errors(code: str) -> dict[str, ParseErrors]:
    """Per language of ``LANGUAGES``, the ERROR/MISSING nodes its grammar finds in ``code``.

    Python is judged by ``ast`` (so it agrees with ``code_parses``): code that ``ast`` rejects
    counts at least one error even where tree-sitter's more lenient grammar finds none.
    """
    errors = {language: _count_errors(_tree(code, language).root_node) for language in LANGUAGES}
    python = errors["python"]
    if parse_python(code) is not None:
        errors["python"] = ParseErrors(0, 0)
    elif python.nodes == 0:
        errors["python"] = ParseErrors(1, 1)
    return errors


def candidate_languages(code: str) -> list[str]:
    """The languages whose grammar finds the fewest error nodes in ``code``, in ``LANGUAGES`` order.

    Empty when every grammar has errors on at least half of the non-blank lines (prose,
    or a language with no grammar here): the code then is in none of them.
    """
    errors = parse_errors(code)
    lines = max(1, sum(1 for line in code.splitlines() if line.strip()))
    plausible = {language: e.nodes for language, e in errors.items() if e.nodes == 0 or 2 * e.lines < lines}
    if not plausible:
        return []
    fewest = min(plausible.values())
    return [language for language, nodes in plausible.items() if nodes == fewest]


def detect_language(code: str) -> str | None:
    """The language of ``code`` among ``LANGUAGES``, or None when it can't be told.

    A fenced block's tag, when one names a language, wins (the first such tag). Otherwise the
    fenced code (or, with no fence, the whole text) goes to ``candidate_languages``: one
    candidate is the answer; a tie (``x = 1`` parses as Python and JavaScript) or none is None.
    """
    blocks = code_blocks(code)
    for tag, _ in blocks:
        if canonical_language(tag) in GRAMMARS:
            return canonical_language(tag)
    source = "\n".join(block for _, block in blocks) if blocks else code
    candidates = candidate_languages(source)
    return candidates[0] if len(candidates) == 1 else None


def response_code_parses(response: str, language: str | None = None) -> bool:
    """Every fenced block (with none, the whole response) parses in its language.

    A block's language is its fence tag, else the row's ``language``; code in a language
    with no grammar here (```bash, "SQL") is not checked. Code of unknown language must
    parse as one of ``LANGUAGES`` (prose does not).
    """
    blocks = code_blocks(response) or [("", response)]
    return all(_piece_parses(code, canonical_language(tag) or canonical_language(language)) for tag, code in blocks)


def response_in_languages(response: str, languages: list[str], language: str | None = None) -> bool:
    """Every piece of code in the response may be in ``languages``; a prose-only response is kept.

    A piece is each fenced block or, with none, the response's code-like lines. Its language
    is its fence tag, else the row's ``language``, else ``candidate_languages`` (a tie between
    an allowed and another language keeps it; undetectable code is removed).
    """
    if is_prose_only(response):
        return True
    wanted = {canonical_language(name) for name in languages}
    pieces = code_blocks(response) or [("", "\n".join(code_lines(response)))]
    for tag, code in pieces:
        known = canonical_language(tag) or canonical_language(language)
        candidates = {known} if known else set(candidate_languages(code))
        if not candidates & wanted:
            return False
    return True


def _piece_parses(code: str, language: str | None) -> bool:
    if language is None:
        return any(errors.nodes == 0 for errors in parse_errors(code).values())
    return code_parses(code, language) if language == "python" or has_grammar(language) else True


def _checked(language: str) -> str:
    canonical = canonical_language(language)
    if canonical not in GRAMMARS:
        raise ValueError(
            f"no tree-sitter grammar registered for language {language!r} (the languages are "
            f"{', '.join(map(repr, LANGUAGES))}); a grammar installed with e.g. `pip install "
            f"tree-sitter-{canonical}` can be added to GRAMMARS in {__name__}"
        )
    return canonical


@cache
def _parser(language: str) -> tree_sitter.Parser:
    """One parser per language and process (Ray workers each build their own)."""
    module, package = GRAMMARS[language]
    try:
        grammar = importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"the tree-sitter grammar for {language} is not installed: pip install '{package}<0.23'"
        ) from error
    return tree_sitter.Parser(tree_sitter.Language(grammar.language()))


def _tree(code: str, language: str) -> tree_sitter.Tree:
    return _parser(language).parse(code.encode("utf-8", "surrogatepass"))


def _count_errors(root: tree_sitter.Node) -> ParseErrors:
    """ERROR and MISSING nodes under ``root``, and the distinct lines they start on."""
    nodes, lines, stack = 0, set(), [root]
    while stack:  # iterative: deeply nested code would exceed Python's recursion limit
        node = stack.pop()
        if node.is_error or node.is_missing:
            nodes += 1
            lines.add(node.start_point[0])
        stack.extend(child for child in node.children if child.has_error or child.is_missing)
    return ParseErrors(nodes, len(lines))
