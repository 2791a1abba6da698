"""The study report on a realistic experiment in a temporary MLflow database: its numbers against
the per-problem tables, its warnings and escaping, the report run in MLflow, and the page as a
browser renders it.

The experiment: five conditions on HumanEval (41 problems, 0/1 outcomes, difficulties) and MBPP
(20 problems, 5 samples each); lora-n1000 has two seeds and checkpoint runs; the lora conditions
sweep train_size, base and icl-3shot differ in shots; the lora conditions all have lora_rank 16, so
no lora_rank plot is drawn.

Then how results were chosen: studies logged as the study runner logs them, one choosing on the
selection part of a split benchmark and one on the reported problems (``selection.mode: on_test``),
from recorded runs and end to end from ``tune.study_runner`` with faked answers.
"""

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, Param

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData
from eval.pool import LocalSandboxPool
from eval.significance import bootstrap_ci, compare_paired, selection_aware_test
from ray_jobs.report import ReportError, main, write_report
from tune.study_runner import StudyRunner
from tune.study_spec import STUDIES_DIR, load_study_spec
from tune.study_world import ModelWorld, study_benchmarks

EXPERIMENT = "study <&> 1"
ODD_TASK_ID = "HumanEval/<img src=x onerror=alert(9)>"
FAILURES = ("failed", "timeout", "error:TypeError", "syntax_error")
HUMANEVAL_PROBLEMS, MBPP_PROBLEMS, MBPP_SAMPLES = 41, 20, 5
# condition -> its params, and per seed the HumanEval problems it solves and its MBPP boost (see _mbpp_passes).
CONDITIONS = {
    "base": ({"method": "base", "shots": "0"}, {"0": (range(8), 0)}),
    "icl-3shot": ({"method": "icl", "shots": "3", "shot_strategy": "random"}, {"0": ([*range(6), *range(8, 14)], 1)}),
    "lora-n100": ({"method": "lora", "lora_rank": "16", "train_size": "100"}, {"0": (range(15), 1)}),
    "lora-n300": ({"method": "lora", "lora_rank": "16", "train_size": "300"}, {"0": (range(20), 2)}),
    "lora-n1000": ({"method": "lora", "lora_rank": "16", "train_size": "1000"},
                   {"0": (range(25), 3), "1": ([*range(23), 30], 2)}),
}
CHECKPOINTS = {50: range(10), 100: range(18), 150: range(25)}  # lora-n1000, seed 0, HumanEval


def _humaneval_id(index: int) -> str:
    return ODD_TASK_ID if index == 9 else f"HumanEval/{index}"


def _humaneval_rows(solved) -> list[dict]:
    solved = set(solved)
    return [{"task_id": _humaneval_id(i), "n": 1, "c": int(i in solved), "pass_at_1": float(i in solved),
             "dominant_failure": "" if i in solved else FAILURES[i % 4],
             "difficulty": ("easy", "medium", "hard")[i % 3]} for i in range(HUMANEVAL_PROBLEMS)]


def _mbpp_passes(index: int, boost: int) -> int:
    """Problems 0-3 pass every sample under every condition; the rest pass (index % 3) + boost."""
    return MBPP_SAMPLES if index < 4 else min(MBPP_SAMPLES, index % 3 + boost)


def _mbpp_rows(boost: int) -> list[dict]:
    rows = []
    for i in range(MBPP_PROBLEMS):
        c = _mbpp_passes(i, boost)
        rows.append({"task_id": f"Mbpp/{i}", "n": MBPP_SAMPLES, "c": c, "pass_at_1": c / MBPP_SAMPLES,
                     "dominant_failure": "" if c == MBPP_SAMPLES else FAILURES[i % 2]})
    return rows


def _log_run(client, experiment_id: str, tags: dict, params: dict, rows: list[dict] | None,
             metrics: dict | None = None) -> None:
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    tested = rows and "pass_at_1" in rows[0]
    metrics = {**(metrics or {}), **({"pass_at_1": float(np.mean([row["pass_at_1"] for row in rows]))} if tested else {})}
    client.log_batch(run_id, metrics=[Metric(name, value, 0, 0) for name, value in metrics.items()],
                     params=[Param(name, value) for name, value in params.items()])
    if rows is not None:
        client.log_dict(run_id, rows, "per_problem.json")
    client.set_terminated(run_id)


def _build_experiment(client, artifacts: Path) -> None:
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    for index, (condition, (params, seeds)) in enumerate(CONDITIONS.items()):
        for seed, (solved, boost) in seeds.items():
            run_params = {**params, "seed": seed}
            tags = {"run_kind": "evaluation", "condition": condition, "model": "tiny"}
            _log_run(client, experiment_id, {**tags, "benchmark": "humaneval"}, run_params,
                     _humaneval_rows(solved), {"bleu": 0.2 + 0.05 * index})
            _log_run(client, experiment_id, {**tags, "benchmark": "mbpp"}, run_params, _mbpp_rows(boost))
            # A benchmark without tests: per-problem BLEU, no pass@1.
            _log_run(client, experiment_id, {**tags, "benchmark": "heldout"}, run_params,
                     [{"task_id": f"held/{i}", "bleu": 0.1 * i, "completion": "pass"} for i in range(3)],
                     {"bleu": 0.1 + 0.1 * index})
    for step, solved in CHECKPOINTS.items():
        _log_run(client, experiment_id, {"run_kind": "evaluation", "condition": "lora-n1000", "model": "tiny",
                                         "benchmark": "humaneval", "checkpoint_step": str(step)},
                 {**CONDITIONS["lora-n1000"][0], "seed": "0"}, _humaneval_rows(solved))
    # Ignored: a training run, and an evaluation run without its per-problem table.
    _log_run(client, experiment_id, {"run_kind": "training", "condition": "base", "benchmark": "humaneval"},
             {}, _humaneval_rows(range(HUMANEVAL_PROBLEMS)))
    _log_run(client, experiment_id, {"run_kind": "evaluation", "condition": "base", "benchmark": "humaneval"},
             {}, None)
    client.create_experiment("empty study", artifact_location=(artifacts / "empty").as_uri())
    reference_only = client.create_experiment("reference only", artifact_location=(artifacts / "ref").as_uri())
    for index, condition in enumerate(("base", "lora")):
        _log_run(client, reference_only, {"run_kind": "evaluation", "condition": condition, "benchmark": "heldout"},
                 {"method": "none"}, [{"task_id": "held/0", "bleu": 10.0 * index}], {"bleu": 10.0 * index})


def _expected_pass_at_1(condition: str, benchmark: str) -> np.ndarray:
    """Per-problem pass@1 averaged over seeds, computed from the fixture's patterns."""
    seeds = CONDITIONS[condition][1].values()
    if benchmark == "humaneval":
        per_seed = [[float(i in set(solved)) for i in range(HUMANEVAL_PROBLEMS)] for solved, _ in seeds]
    else:
        per_seed = [[_mbpp_passes(i, boost) / MBPP_SAMPLES for i in range(MBPP_PROBLEMS)] for _, boost in seeds]
    return np.mean(per_seed, axis=0)


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts, with the attributes of each table and row."""

    def __init__(self):
        super().__init__()
        self.tables: list[dict] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"attrs": dict(attrs), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append({"attrs": dict(attrs), "cells": []})
        elif tag in ("td", "th") and self.tables:
            self._cell = []
        elif tag == "span" and self._cell is not None:
            self._cell.append(" | ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1]["cells"].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(html: str) -> list[dict]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def _table(tables: list[dict], **attrs) -> list[list[str]]:
    return [row["cells"] for row in next(t for t in tables if attrs.items() <= t["attrs"].items())["rows"]]


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    _build_experiment(mlflow.MlflowClient(uri), root / "artifacts")
    return uri


@pytest.fixture(scope="module")
def report(tracking_uri, tmp_path_factory) -> Path:
    return write_report(EXPERIMENT, str(tmp_path_factory.mktemp("report")), tracking_uri=tracking_uri)


# Two studies as tune.study_runner logs them. Held out: test's 30 held-out problems are reported,
# the lora checkpoints were chosen on its 10 other ones (test-selection). On test, the case:
# lora's checkpoints scored 11, 23, 15 and 18 of the 60 reported problems, step 60 was kept for it,
# and icl chose between 0 and 1 shots on them too.
PROVENANCE = {"data_content_hash": "abc123", "sandbox_isolation": "namespaces"}
HELD_OUT = {"selection_mode": "held_out", "selection_benchmarks": "test-selection", "split_of": "test",
            "split_fraction": "0.25", "split_seed": "0", "split_stratified_by": "family", **PROVENANCE}
ON_TEST = {"selection_mode": "on_test", "selection_benchmarks": "test", **PROVENANCE}
BASE_SOLVED, ON_TEST_PROBLEMS = range(13), 60
CHECKPOINT_SOLVED = {30: [*range(6), *range(30, 35)], 60: [*range(10), *range(13, 26)],
                     90: [*range(5), *range(40, 50)], 120: [*range(8), *range(50, 60)]}
ICL_SOLVED = {"icl-0shot": range(12), "icl-1shot": range(16)}


def _rows(task_ids: list[str], solved) -> list[dict]:
    solved = {task_ids[i] for i in solved}
    return [{"task_id": t, "n": 1, "c": int(t in solved), "pass_at_1": float(t in solved)} for t in task_ids]


def _scores(solved) -> np.ndarray:
    """Per-problem scores in task id order, as the report aligns them (the Monte Carlo p depends on it)."""
    order = sorted(range(ON_TEST_PROBLEMS), key=lambda i: f"T/{i}")
    return np.array([float(i in set(solved)) for i in order])


@pytest.fixture(scope="module")
def selection_reports(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("selection")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)

    def log(experiment_id, condition, benchmark, params, rows, **tags):
        _log_run(client, experiment_id, {"run_kind": "evaluation", "condition": condition, "benchmark": benchmark,
                                         "model": "tiny", **tags}, {**params, "seed": "0"}, rows)

    held_out = client.create_experiment("held out", artifact_location=(root / "held").as_uri())
    reported, selection = [f"T/{i}" for i in range(30)], [f"T/{i}" for i in range(30, 40)]
    log(held_out, "base", "test", {**HELD_OUT, "chosen_on": "nothing", "split_part": "held_out"},
        _rows(reported, range(6)))
    log(held_out, "lora", "test", {**HELD_OUT, "chosen_on": "test-selection", "split_part": "held_out"},
        _rows(reported, range(12)))
    for step, solved in ((30, range(2)), (60, range(5))):
        log(held_out, "lora", "test-selection", {**HELD_OUT, "chosen_on": "test-selection", "split_part": "selection"},
            _rows(selection, solved), checkpoint_step=str(step))

    on_test = client.create_experiment("on test", artifact_location=(root / "on").as_uri())
    problems = [f"T/{i}" for i in range(ON_TEST_PROBLEMS)]
    log(on_test, "base", "test", {**ON_TEST, "chosen_on": "nothing"}, _rows(problems, BASE_SOLVED))
    log(on_test, "lora", "test", {**ON_TEST, "chosen_on": "test"}, _rows(problems, CHECKPOINT_SOLVED[60]))
    for step, solved in CHECKPOINT_SOLVED.items():
        log(on_test, "lora", "test", {**ON_TEST, "chosen_on": "test"}, _rows(problems, solved),
            checkpoint_step=str(step))
    for candidate, solved in ICL_SOLVED.items():
        log(on_test, candidate, "test", {**ON_TEST, "chosen_on": "test"}, _rows(problems, solved), candidate_of="icl")
    log(on_test, "icl", "test", {**ON_TEST, "chosen_on": "test"}, _rows(problems, ICL_SOLVED["icl-1shot"]))
    return {name: write_report(name, str(root / name), tracking_uri=uri).read_text()
            for name in ("held out", "on test")}


def _comparisons(html: str) -> dict[str, list[str]]:
    table = next(t for t in _tables(html) if t["attrs"].get("class") == "comparison-table")
    return {row["cells"][0]: row["cells"] for row in table["rows"][1:]}


def test_a_held_out_study_reports_the_held_out_problems_and_says_where_it_chose(selection_reports):
    html = selection_reports["held out"]
    main_rows = {row[0]: row[1:] for row in _table(_tables(html), id="main-table")}
    assert main_rows["condition"] == ["test"]  # the selection part has checkpoint runs only
    assert all("n=30" in cells[0] for name, cells in main_rows.items() if name != "condition")
    assert ("chosen on test-selection (10 problems of test, split with seed 0, fraction 0.25, stratified by "
            "family); test is reported on its 30 other problems only") in html
    assert "Training data content hash: abc123; sandbox isolation: namespaces" in html
    assert "selected on the reported problems" not in html and "selection-aware" not in html
    assert _comparisons(html)["lora"][5] == "McNemar"


def test_a_result_chosen_on_the_reported_problems_is_labelled_and_tested_for_the_choice(selection_reports):
    html = selection_reports["on test"]
    assert "Chosen on the reported problems (selection.mode: on_test)" in html
    assert "(the winner's curse)" in html  # the one sentence that says why
    main_rows = {row[0]: row[1] for row in _table(_tables(html), id="main-table")[1:]}
    assert "selected on the reported problems" in main_rows["lora"] and "selected" not in main_rows["base"]
    assert "candidate of icl" in main_rows["icl-0shot"] and "selected" not in main_rows["icl-0shot"]

    comparisons = _comparisons(html)
    assert set(comparisons) == {"lora", "icl"}  # candidates are not compared with the reference themselves
    base = _scores(BASE_SOLVED)
    plain = compare_paired(base, _scores(CHECKPOINT_SOLVED[60]))
    aware = selection_aware_test([_scores(solved) for solved in CHECKPOINT_SOLVED.values()], base)
    lora = comparisons["lora"]
    assert lora[4].startswith(f"{100 * plain.difference:+.1f} [")  # the difference itself is as measured
    assert lora[5] == "selection-aware (best of 4)" and lora[6] == f"{aware.p_value:.3f}"
    # The choice among 4 costs p-value against testing the kept checkpoint alone (one-sided, as it is).
    assert aware.p_value > selection_aware_test([_scores(CHECKPOINT_SOLVED[60])], base).p_value
    assert lora[-1].startswith("selected on the reported problems")
    assert comparisons["icl"][5] == "selection-aware (best of 2)"


def test_main_table_is_the_seed_averaged_per_problem_mean_with_its_bootstrap_ci(report):
    rows = _table(_tables(report.read_text()), id="main-table")
    assert rows[0] == ["condition", "humaneval", "mbpp"]
    assert [row[0] for row in rows[1:]] == ["base", "icl-3shot", "lora-n100", "lora-n300", "lora-n1000"]
    for condition, *cells in rows[1:]:
        for benchmark, cell in zip(["humaneval", "mbpp"], cells):
            values = _expected_pass_at_1(condition, benchmark)
            low, high = bootstrap_ci(values)
            assert cell.startswith(f"{100 * values.mean():.1f} [{100 * low:.1f}, {100 * high:.1f}] | n={len(values)}")
    seeds = rows[-1][1]
    assert f"2 seeds: {100 * 24 / 41:.1f}–{100 * 25 / 41:.1f}" in seeds  # the two seeds solve 24 and 25 of 41


def test_other_metrics_and_header(report):
    html = report.read_text()
    metrics = _table(_tables(html), id="metrics-table")
    assert metrics[0] == ["condition", "heldout · bleu", "humaneval · bleu"]  # MBPP runs logged no bleu
    assert metrics[1] == ["base", "0.100", "0.200"] and metrics[-1] == ["lora-n1000", "0.500", "0.400"]
    # The benchmark without tests is in neither the pass@1 table nor the problem counts.
    assert "Without tests, scored by the other metrics only: heldout" in html and "heldout (" not in html
    assert "5 conditions" in html and "humaneval (41 problems)" in html and "mbpp (20 problems)" in html
    assert "Models: tiny" in html
    assert "no or an empty per_problem.json" in html  # the evaluation run without one is named, not dropped silently


def test_a_study_without_tests_reports_its_other_metrics(tracking_uri, tmp_path):
    html = write_report("reference only", str(tmp_path), tracking_uri=tracking_uri).read_text()
    assert _table(_tables(html), id="metrics-table") == [["condition", "heldout · bleu"], ["base", "0.000"],
                                                         ["lora", "10.000"]]
    assert "No benchmark of this study has tests" in html


def test_comparisons_warn_when_too_few_problems_to_tell(report):
    tables = _tables(report.read_text())
    humaneval = next(t for t in tables if t["attrs"].get("class") == "comparison-table")["rows"]
    by_condition = {row["cells"][0]: row for row in humaneval[1:]}
    assert set(by_condition) == {"icl-3shot", "lora-n100", "lora-n300", "lora-n1000"}
    icl = by_condition["icl-3shot"]  # 8/41 against 12/41
    assert icl["attrs"].get("class") == "too-small"
    assert icl["cells"][1:4] == ["41", f"{800 / 41:.1f}", f"{1200 / 41:.1f}"] and icl["cells"][4].startswith("+9.8 [")
    assert icl["cells"][5] == "McNemar" and "too small to tell" in icl["cells"][-1]
    assert "class" not in by_condition["lora-n1000"]["attrs"]
    mbpp = [t for t in tables if t["attrs"].get("class") == "comparison-table"][1]["rows"]
    assert {row["cells"][5] for row in mbpp[1:]} == {"paired permutation"}  # fractions of 5 samples
    p_values = [(float(row["cells"][6].lstrip("<")), float(row["cells"][7].lstrip("<"))) for table in tables
                if table["attrs"].get("class") == "comparison-table" for row in table["rows"][1:]]
    assert len(p_values) == 8 and all(holm >= p for p, holm in p_values)  # Holm over all 8 comparisons


def test_disagreements_are_escaped_and_sorted_by_how_many_conditions_solve_them(report):
    html = report.read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(9)&gt;" in html
    assert "study &lt;&amp;&gt; 1" in html
    humaneval, mbpp = [t["rows"] for t in _tables(html) if t["attrs"].get("class") == "disagreement-table"]
    header, *rows = [row["cells"] for row in humaneval]
    assert header == ["task_id", "base", "icl-3shot", "lora-n100", "lora-n300", "lora-n1000", "solved by"]
    assert {row[0] for row in rows} == {_humaneval_id(i) for i in [*range(6, 25), 30]}
    assert rows[:3] == [["HumanEval/6", "✓", "✗", "✓", "✓", "✓", "4"],  # ties in natural task id order
                        ["HumanEval/7", "✓", "✗", "✓", "✓", "✓", "4"],
                        ["HumanEval/8", "✗", "✓", "✓", "✓", "✓", "4"]]
    assert [ODD_TASK_ID, "✗", "✓", "✓", "✓", "✓", "4"] in rows
    assert [float(row[-1]) for row in rows] == sorted((float(row[-1]) for row in rows), reverse=True)
    assert ["HumanEval/30", "✗", "✗", "✗", "✗", "1/2", "0.5"] in rows  # solved by one of two seeds
    assert not any(row["cells"][0] in {f"Mbpp/{i}" for i in range(4)} for row in mbpp)  # all agree


def test_report_run_holds_the_report_in_mlflow(report, tracking_uri):
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = client.search_runs([experiment_id], "tags.run_kind = 'report'")
    assert run.info.status == "FINISHED" and run.data.params["reference"] == "base"
    assert [item.path for item in client.list_artifacts(run.info.run_id)] == ["report.html"]


def test_cli_writes_the_report_with_another_reference(tracking_uri, tmp_path, capsys):
    assert main([EXPERIMENT, "--tracking-uri", tracking_uri, "--out", str(tmp_path),
                 "--reference", "lora-n1000"]) == 0
    assert str(tmp_path / "report.html") in capsys.readouterr().out
    html = (tmp_path / "report.html").read_text()
    assert "Paired comparisons against lora-n1000" in html
    assert _table(_tables(html), id="main-table")[1][0] == "lora-n1000"


def test_clear_errors(tracking_uri, tmp_path, capsys):
    assert main(["no such study", "--tracking-uri", tracking_uri, "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "no experiment named 'no such study'" in error and EXPERIMENT in error and "empty study" in error
    with pytest.raises(ReportError, match="has no evaluation runs"):
        write_report("empty study", str(tmp_path), tracking_uri=tracking_uri)
    with pytest.raises(ReportError, match="reference condition 'full' not in this experiment"):
        write_report(EXPERIMENT, str(tmp_path), tracking_uri=tracking_uri, reference="full")


def _system_chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def test_report_renders_in_a_browser(report):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser check needs playwright")
    executable = _system_chromium()
    if executable is None:
        pytest.skip("no system Chromium (chromium, chromium-browser or google-chrome) on PATH")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        page = browser.new_page()
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri())
        widths = page.eval_on_selector_all("img", "images => images.map(image => image.naturalWidth)")
        titles = page.eval_on_selector_all("figure h3", "headings => headings.map(h => h.textContent)")
        n_tables = page.locator("table").count()
        browser.close()
    # train_size (lora), shots (base, icl); no lora_rank figure: every condition with one has 16.
    assert titles == ["pass@1 against train_size", "pass@1 against shots", "Checkpoint curves",
                      "Failure categories", "Pass rate by difficulty"]
    assert len(widths) == 5 and all(width > 0 for width in widths)
    assert n_tables == 6  # main, other metrics, a comparison and a disagreement table per benchmark
    assert errors == []


# The same, end to end from the study runner (answers faked, judged in the real sandbox).
DOUBLE = {"language": "python", "kind": "function", "entry_point": "double", "canonical_solution": "    return 2 * x\n",
          "prompt": 'def double(x):\n    """Twice x."""\n', "test": "def check(f):\n    assert f(3) == 6\n"}
ICL_VS_BASE = "conditions=[{name: base, kind: base}, {name: icl, kind: icl, icl: {shots: [0, 1]}}]"


def _runner_report(tmp_path: Path, monkeypatch, selection: str) -> tuple[str, dict]:
    """A study whose icl condition chooses between 0 and 1 shots (1 shot answers right, on every
    other problem), run by tune.study_runner on 16 problems of two families, and its report."""
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({**DOUBLE, "task_id": f"t/{i}", "family": "ab"[i % 2]}) + "\n"
                                for i in range(16)))
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml", [ICL_VS_BASE, f"selection.mode={selection}",
                                                                       f"study=runner {selection}"])
    benchmarks, split = study_benchmarks(spec, str(problems))
    world = ModelWorld("tiny", "model/dir", DataConfig(), PreparedData("t", "v", {}, "hash"), benchmarks, [], split)

    def answers(self, world, seed, evaluations):
        right = lambda e, i: e.answering.shots is not None and e.answering.shots.k == 1 and i % 2 == 0
        return {e: [(p, "    return 2 * x\n" if right(e, int(p["task_id"][2:])) else "    return x\n")
                    for p in world.benchmarks[e.benchmark].values()] for e in evaluations}

    monkeypatch.setattr(StudyRunner, "answers", answers)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with LocalSandboxPool(threads=2) as pool:
        StudyRunner.start(spec, pool, uri).run_prompting(world, seed=0)
    html = write_report(spec.study, str(tmp_path / "report"), tracking_uri=uri).read_text()
    return html, benchmarks


def test_a_runner_study_held_out_reports_only_the_held_out_problems(tmp_path, monkeypatch):
    html, benchmarks = _runner_report(tmp_path, monkeypatch, "held_out")
    main_rows = {row[0]: row[1:] for row in _table(_tables(html), id="main-table")}
    assert main_rows["condition"] == ["test", "test-selection"]
    held_out = len(benchmarks["test"])
    assert held_out == 12 and all(cells[0].endswith(f"n={held_out}") for name, cells in main_rows.items()
                                  if name in ("base", "icl"))
    assert "candidate of icl" in main_rows["icl-1shot"][1]
    assert "test is reported on its 12 other problems only" in html and "selection-aware" not in html


def test_a_runner_study_on_test_labels_its_choice_and_tests_it_as_one(tmp_path, monkeypatch):
    html, _ = _runner_report(tmp_path, monkeypatch, "on_test")
    comparisons = _comparisons(html)
    assert set(comparisons) == {"icl"} and comparisons["icl"][1] == "16"
    assert comparisons["icl"][5] == "selection-aware (best of 2)"
    assert comparisons["icl"][-1].startswith("selected on the reported problems")
