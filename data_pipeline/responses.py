"""What a response holds: fenced code blocks, code-like lines, prose, and whether its Python parses."""

import ast
import re
import warnings

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
PYTHON_TAGS = frozenset({"", "python", "py", "python3"})
# C-family/JS declarations and comment markers (in an unfenced answer a "#" line is a comment).
_CODE_STARTS = ("#", "//", "/*", "public ", "private ", "function ", "const ", "let ", "var ", "import ")
_CODE_ENDINGS = (";", "{", "}")


def code_blocks(response: str) -> list[tuple[str, str]]:
    """(language tag, code) of each closed ```fenced``` block, tag lower-cased ("" if none)."""
    return [(tag.casefold(), code) for tag, code in _FENCE.findall(response)]


def prose(response: str) -> str:
    """The response outside its fenced blocks, or, with none, its lines that don't look like code."""
    if code_blocks(response):
        return _FENCE.sub("\n", response)
    return "\n".join(line for line in response.splitlines() if not looks_like_code(line))


def code_lines(response: str) -> list[str]:
    """Lines of the fenced blocks, or, with none, the lines that look like code."""
    blocks = code_blocks(response)
    if blocks:
        return [line for _, code in blocks for line in code.splitlines()]
    return [line for line in response.splitlines() if looks_like_code(line)]


def looks_like_code(line: str) -> bool:
    """A Python statement other than a bare expression (calls count), a comment, or C-family/markup syntax."""
    text = line.strip()
    if not text:
        return False
    if text.endswith(_CODE_ENDINGS) or text.startswith(_CODE_STARTS):
        return True
    if text.startswith("<") and text.endswith(">"):
        return True
    tree = parse_python(text + " pass" if text.endswith(":") else text)
    return tree is not None and any(_is_code_statement(node) for node in tree.body)


def is_prose_only(response: str) -> bool:
    """True when the response has no fenced block and no line that looks like code."""
    return not code_blocks(response) and not any(map(looks_like_code, response.splitlines()))


def python_parses(response: str, language: str | None = None) -> bool:
    """Every Python (or untagged) fenced block parses; with no block, the whole response does.

    A row whose ``language`` is set to something other than Python is not checked.
    """
    if language and language.casefold() not in PYTHON_TAGS:
        return True
    blocks = code_blocks(response)
    sources = [code for tag, code in blocks if tag in PYTHON_TAGS] if blocks else [response]
    return all(parse_python(source) is not None for source in sources)


def _is_code_statement(node: ast.stmt) -> bool:
    """Not a bare expression ("Hello") nor a bare annotation ("Note: it is slow"), unless a call."""
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Call)
    return not (isinstance(node, ast.AnnAssign) and node.value is None)


def parse_python(source: str) -> ast.Module | None:
    """The module ``source`` parses to, or None where it is not valid Python (never raises)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning for invalid escape sequences
        try:
            return ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
