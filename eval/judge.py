"""LLM-as-judge: ask a chat model whether a completion solves its problem.

The prompt follows CodeJudge (Tong and Zhang 2024, arXiv 2410.02184): the judge
reads the problem statement, identifies the required functionality, analyses
the candidate step by step against it and against a reference solution, and
concludes. CodeJudge summarises the analysis in a second call; here the same
answer ends with a fixed line, so one request per item is enough::

    VERDICT: CORRECT      (verdict 1)
    VERDICT: INCORRECT    (verdict 0)

The last such line in the answer counts (case and markdown emphasis are
ignored). An answer without one has verdict None: ``judge_score`` counts it
apart instead of reading it as a failure.

Any OpenAI-compatible chat-completions server works (vLLM, llama.cpp, hosted
APIs): requests go to ``{base_url}/chat/completions`` with the key, if any, read
from the environment variable named in the settings.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

from pydantic import BaseModel, ConfigDict, Field

SYSTEM_PROMPT = """\
You are a strict judge of code. You are given a programming problem, a reference \
solution known to be correct, and a candidate solution written in {language}. \
Decide whether the candidate is functionally correct: for every valid input it \
must behave as the problem requires, as the reference does. Do not write a corrected version.

Evaluation steps:
1. Read the problem statement and identify the required functionality, including edge cases \
and input constraints. Use the reference solution to understand the problem better.
2. Read the candidate and analyse its logic step by step, line by line.
3. Check whether the candidate covers all the required functionality. Differences in style, \
naming, structure or efficiency do not matter unless the problem states them.
4. Conclude. The last line of your answer must be exactly one of:
VERDICT: CORRECT
VERDICT: INCORRECT"""

USER_PROMPT = """\
Problem statement:
```
{problem}
```

Reference solution:
```{language}
{reference}
```

Candidate solution:
```{language}
{candidate}
```"""

_VERDICT = re.compile(r"VERDICT[\s*_`]*:[\s*_`]*(INCORRECT|CORRECT)\b", re.IGNORECASE)


class JudgeSettings(BaseModel):
    """Where the judge model is served and how to call it.

    ``api_key_env`` names the environment variable holding the key; when it is
    unset or empty no Authorization header is sent (local servers). A request is
    tried ``max_retries + 1`` times at most, waiting ``retry_backoff_s``, then
    twice that, and so on, after a 408, 429 or 5xx answer, a timeout or a
    connection error.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    retry_backoff_s: float = Field(1.0, ge=0)
    concurrency: int = Field(4, gt=0)


class JudgeError(RuntimeError):
    """The judge server could not be reached or gave no usable answer."""


class _Retryable(Exception):
    """A failure worth another try: overload, server error, timeout, no connection."""


def judge_completions(problems: list[dict], completions: list[str], settings: JudgeSettings) -> list[dict]:
    """Judge ``completions[i]`` as a solution of ``problems[i]``, ``concurrency`` requests at a time.

    A problem has ``task_id``, ``prompt`` (the statement), ``reference`` and
    optionally ``language`` (default python). One record per completion, in
    order: ``task_id``, ``model`` (as the server names it), ``messages`` (the
    full prompt sent), ``answer`` (the raw text) and ``verdict`` (1, 0 or None).
    Raises ``JudgeError`` when a request fails for good.
    """
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems for {len(completions)} completions")
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        return list(pool.map(_judge_one, problems, completions, repeat(settings)))


def judge_score(records: list[dict]) -> dict[str, float]:
    """``judged`` and ``unparsed`` counts, and ``judge_score``: the share judged correct.

    ``judge_score`` is over the parsed verdicts only, and absent when there is none.
    """
    verdicts = [record["verdict"] for record in records if record["verdict"] is not None]
    summary = {"judged": len(verdicts), "unparsed": len(records) - len(verdicts)}
    if verdicts:
        summary["judge_score"] = sum(verdicts) / len(verdicts)
    return summary


def build_messages(problem: dict, completion: str) -> list[dict[str, str]]:
    """The chat messages that ask for a verdict on ``completion``."""
    language = problem.get("language", "python")
    user = USER_PROMPT.format(
        language=language, problem=problem["prompt"], reference=problem["reference"], candidate=completion
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(language=language)},
        {"role": "user", "content": user},
    ]


def parse_verdict(answer: str) -> int | None:
    """1 for a final ``VERDICT: CORRECT``, 0 for ``VERDICT: INCORRECT``, None without one."""
    found = _VERDICT.findall(answer)
    return None if not found else int(found[-1].upper() == "CORRECT")


def chat(messages: list[dict[str, str]], settings: JudgeSettings) -> dict:
    """The server's JSON reply to one chat-completions request, retried as the settings say."""
    url = _endpoint(settings)
    body = json.dumps({
        "model": settings.model, "messages": messages,
        "temperature": settings.temperature, "max_tokens": settings.max_tokens,
    }).encode()
    attempt = 0
    while True:
        try:
            return _post(url, body, settings)
        except _Retryable as error:
            if attempt == settings.max_retries:
                raise JudgeError(f"judge request to {url} failed after {attempt + 1} attempts: {error}") from error
            time.sleep(settings.retry_backoff_s * 2 ** attempt)
            attempt += 1


def _judge_one(problem: dict, completion: str, settings: JudgeSettings) -> dict:
    messages = build_messages(problem, completion)
    reply = chat(messages, settings)
    answer = _answer_text(reply, settings)
    return {
        "task_id": problem["task_id"],
        "model": reply.get("model", settings.model),
        "messages": messages,
        "answer": answer,
        "verdict": parse_verdict(answer),
    }


def _post(url: str, body: bytes, settings: JudgeSettings) -> dict:
    """POST one request; raise ``_Retryable`` or ``JudgeError`` on failure."""
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get(settings.api_key_env):
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            text = response.read()
    except urllib.error.HTTPError as error:
        detail = f"HTTP {error.code}: {error.read()[:500].decode(errors='replace')}"
        if error.code in (408, 429) or error.code >= 500:
            raise _Retryable(detail) from error
        raise JudgeError(f"judge request to {url} failed with {detail}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise _Retryable(repr(error)) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise JudgeError(f"judge server at {url} answered with non-JSON: {text[:200]!r}") from error


def _endpoint(settings: JudgeSettings) -> str:
    return settings.base_url.rstrip("/") + "/chat/completions"


def _answer_text(reply: dict, settings: JudgeSettings) -> str:
    """The assistant message's text ("" when it has none, e.g. a refusal)."""
    try:
        return reply["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise JudgeError(f"judge server at {_endpoint(settings)} sent no choices: {str(reply)[:200]}") from error
