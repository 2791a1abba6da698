import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from eval.judge import JudgeError, JudgeSettings, build_messages, judge_completions, judge_score, parse_verdict

STUB_MODEL = "stub-judge-2024-01-01"


class StubJudgeServer(ThreadingHTTPServer):
    """An OpenAI-compatible chat server that judges like a (very naive) model.

    The verdict is CORRECT when the candidate contains the reference's return
    expression. Problems whose statement says GARBAGE get an answer without a
    verdict; FLAKY ones a 500 on their first request; SLOW ones a first answer
    too late for the client. With ``api_key`` set, other keys get a 401.
    """

    daemon_threads = True

    def __init__(self, api_key: str | None = None):
        super().__init__(("127.0.0.1", 0), StubJudgeHandler)
        self.api_key = api_key
        self.requests: list[dict] = []
        self.authorizations: list[str | None] = []
        self.markers_seen: set[str] = set()
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def first_try(self, marker: str) -> bool:
        """Whether this is the first request for a problem with ``marker``."""
        with self.lock:
            first = marker not in self.markers_seen
            self.markers_seen.add(marker)
            return first


class StubJudgeHandler(BaseHTTPRequestHandler):
    server: StubJudgeServer

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        authorization = self.headers.get("Authorization")
        with self.server.lock:
            self.server.requests.append(body)
            self.server.authorizations.append(authorization)
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": "not found"})
        if self.server.api_key and authorization != f"Bearer {self.server.api_key}":
            return self._send(401, {"error": "invalid api key"})
        problem, reference, candidate = re.findall(r"```\w*\n(.*?)\n```", body["messages"][-1]["content"], re.S)
        if "FLAKY" in problem and self.server.first_try("FLAKY"):
            return self._send(500, {"error": "overloaded"})
        if "SLOW" in problem and self.server.first_try("SLOW"):
            return time.sleep(0.5)  # no answer before the client gives up
        message = {"role": "assistant", "content": _answer(problem, reference, candidate)}
        self._send(200, {"model": STUB_MODEL, "choices": [{"index": 0, "message": message}]})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _answer(problem: str, reference: str, candidate: str) -> str:
    if "GARBAGE" in problem:
        return "Hmm. Hard to say, it depends."
    expression = re.search(r"return (.+)", reference).group(1).strip()
    verdict = "CORRECT" if expression in candidate else "INCORRECT"
    return f"The reference returns {expression}.\nVERDICT: {verdict}"


@pytest.fixture
def stub_server():
    servers = []

    def start(api_key: str | None = None) -> StubJudgeServer:
        server = StubJudgeServer(api_key)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _settings(base_url: str, **overrides) -> JudgeSettings:
    fast = {"timeout_s": 2.0, "max_retries": 2, "retry_backoff_s": 0.01, "concurrency": 3}
    return JudgeSettings(base_url=base_url, model="judge", **{**fast, **overrides})


def _problem(task_id: str, statement: str, reference_expression: str) -> dict:
    return {"task_id": task_id, "prompt": statement,
            "reference": f"def f(a, b):\n    return {reference_expression}"}


PROBLEMS = [
    _problem("add", "Add a and b.", "a + b"),
    _problem("sub", "Subtract b from a.", "a - b"),
    _problem("garbage", "Multiply a and b. GARBAGE", "a * b"),
    _problem("flaky", "Divide a by b. FLAKY", "a / b"),
]
COMPLETIONS = ["    return a + b", "    return b - a", "    return a * b", "    return a / b"]


def test_judge_records_verdicts_prompts_and_answers(stub_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = stub_server()
    records = judge_completions(PROBLEMS, COMPLETIONS, _settings(server.base_url))

    assert [record["task_id"] for record in records] == ["add", "sub", "garbage", "flaky"]
    assert [record["verdict"] for record in records] == [1, 0, None, 1]
    assert {record["model"] for record in records} == {STUB_MODEL}
    assert records[1]["answer"] == "The reference returns a - b.\nVERDICT: INCORRECT"
    assert records[2]["answer"] == "Hmm. Hard to say, it depends."
    for problem, completion, record in zip(PROBLEMS, COMPLETIONS, records):
        assert record["messages"] == build_messages(problem, completion)
        assert completion in record["messages"][-1]["content"]
        assert problem["reference"] in record["messages"][-1]["content"]
    assert json.loads(json.dumps(records)) == records  # storable as a JSON artifact
    # One request per item, and one more for the retried 500.
    assert len(server.requests) == 5
    assert all(request["model"] == "judge" and request["temperature"] == 0 for request in server.requests)
    assert server.authorizations == [None] * 5
    assert judge_score(records) == {"judged": 3, "unparsed": 1, "judge_score": pytest.approx(2 / 3)}


def test_judge_sends_the_key_from_the_named_variable(stub_server, monkeypatch):
    server = stub_server(api_key="s3cret")
    monkeypatch.setenv("JUDGE_API_KEY", "s3cret")
    settings = _settings(server.base_url, api_key_env="JUDGE_API_KEY")
    records = judge_completions(PROBLEMS[:1], COMPLETIONS[:1], settings)
    assert records[0]["verdict"] == 1
    assert server.authorizations == ["Bearer s3cret"]


def test_judge_does_not_retry_a_rejected_key(stub_server, monkeypatch):
    server = stub_server(api_key="s3cret")
    monkeypatch.setenv("JUDGE_API_KEY", "wrong")
    settings = _settings(server.base_url, api_key_env="JUDGE_API_KEY")
    with pytest.raises(JudgeError, match=re.escape(f"{server.base_url}/chat/completions failed with HTTP 401")):
        judge_completions(PROBLEMS[:1], COMPLETIONS[:1], settings)
    assert len(server.requests) == 1


def test_judge_retries_after_a_timeout(stub_server):
    server = stub_server()
    problem = _problem("slow", "Add a and b. SLOW", "a + b")
    records = judge_completions([problem], ["return a + b"], _settings(server.base_url, timeout_s=0.2))
    assert records[0]["verdict"] == 1
    assert len(server.requests) == 2


def test_judge_names_an_unreachable_url():
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = _settings(f"http://127.0.0.1:{port}/v1/", timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(JudgeError, match=rf"http://127.0.0.1:{port}/v1/chat/completions failed after 3 attempts"):
        judge_completions(PROBLEMS[:1], COMPLETIONS[:1], settings)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("answer, verdict", [
    ("Looks right.\nVERDICT: CORRECT", 1),
    ("Off by one.\nVERDICT: INCORRECT", 0),
    ("verdict: incorrect", 0),
    ("**VERDICT:** CORRECT", 1),
    ("`VERDICT: INCORRECT`\n", 0),
    ("At first VERDICT: INCORRECT, but on reflection\nVERDICT: CORRECT", 1),
    ("The code is correct.", None),
    ("VERDICT: NOT CORRECT", None),
    ("VERDICT: CORRECTNESS UNCLEAR", None),
    ("", None),
])
def test_parse_verdict(answer, verdict):
    assert parse_verdict(answer) == verdict


def test_judge_score_without_parsed_verdicts():
    assert judge_score([{"verdict": None}, {"verdict": None}]) == {"judged": 0, "unparsed": 2}


def test_judge_settings_reject_unknown_fields():
    with pytest.raises(ValidationError, match="temprature"):
        JudgeSettings(base_url="http://127.0.0.1:1/v1", model="judge", temprature=0.5)


def test_judge_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="2 problems for 1 completions"):
        judge_completions(PROBLEMS[:2], COMPLETIONS[:1], _settings("http://127.0.0.1:1/v1"))
