"""The four embedded-default study specs, end to end on small budgets: Ray, Ray Train + DeepSpeed,
the sandbox, MLflow and the report, as ``python -m ray_jobs.study`` runs them.

The first study runs with the default test command; the other three (two or more fine-tuning runs
each, about 7 minutes together on 2 cores) are marked ``study``: ``python -m pytest -m study``."""

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest

from ray_jobs import study
from tune.study_spec import STUDIES_DIR, load_study_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_cache(tiny_model, tmp_path_factory) -> Path:
    """One cache for the module's studies: the session's tiny model (copied where a study caches its
    base model, so it is not pretrained again), the embedded world and the prepared data."""
    cache = tmp_path_factory.mktemp("study-cache")
    shutil.copytree(tiny_model, cache / "embedded" / "model")
    return cache


@pytest.fixture
def small_budget(tmp_path, shared_cache, tiny_model_config, ray_cluster, monkeypatch) -> list[str]:
    """Overrides that shrink an embedded study to seconds per condition."""
    monkeypatch.chdir(tmp_path)  # the report goes to ./outputs/reports/<study>
    model = [f"embedded.model.{key}={value}" for key, value in tiny_model_config.model_dump().items()]
    return [*model, "embedded.eval_per_family=1", "embedded.n_instructions=400", "data.max_seq_len=128",
            "generation.max_new_tokens=24", "train.max_steps=2", "train.eval_every_steps=2",
            "train.batch_size_per_worker=4", "train.num_workers=1", f"cache_dir={shared_cache}",
            f"storage_path={tmp_path / 'studies'}", f"mlflow_tracking_uri={tracking(tmp_path)}"]


def tracking(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def evaluation_runs(tmp_path: Path, experiment: str) -> list:
    client = mlflow.MlflowClient(tracking(tmp_path))
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], "tags.run_kind = 'evaluation'", max_results=1000)


def by_condition(runs: list, benchmark: str) -> dict:
    return {run.data.tags["condition"]: run for run in runs
            if run.data.tags["benchmark"] == benchmark and "checkpoint_step" not in run.data.tags}


def report_of(name: str) -> str:
    return Path("outputs/reports", name, "report.html").read_text()


def test_icl_vs_lora_selects_shots_then_scores_lora_and_resumes(small_budget, tmp_path):
    # The LoRA search (tune.lora_search, tested end to end in tests/tune) is left out to save time;
    # tests/tune/test_tune_study_runner.py checks how its best trial becomes the final run.
    overrides = [*small_budget, "conditions.2.finetune.search=null",
                 "benchmarks=[{name: validation, problems: '0:8', role: validation}, "
                 "{name: test, problems: '8:', role: test}]"]
    first = study.main([str(STUDIES_DIR / "icl_vs_lora_embedded.yaml"), *overrides])
    runs = evaluation_runs(tmp_path, "icl_vs_lora_embedded")
    validation, test = by_condition(runs, "validation"), by_condition(runs, "test")
    assert set(validation) == {"icl-0shot", "icl-1shot", "icl-3shot"}
    assert set(test) == {"base", "icl", "lora"}
    scores = {int(validation[f"icl-{k}shot"].data.params["shots"]): validation[f"icl-{k}shot"].data.metrics["pass_at_1"]
              for k in (0, 1, 3)}
    assert int(test["icl"].data.params["shots"]) == max(scores, key=lambda k: (scores[k], -k))
    assert (test["icl"].data.params["chosen_on"], test["base"].data.params["chosen_on"]) == ("validation", "nothing")
    assert (test["lora"].data.params["max_steps"], test["lora"].data.params["lora_rank"]) == ("2", "16")
    per_problem = json.loads(Path(mlflow.MlflowClient(tracking(tmp_path)).download_artifacts(
        test["base"].info.run_id, "per_problem.json", str(tmp_path))).read_text())
    assert len(per_problem) == 7 and {"task_id", "pass_at_1", "dominant_failure", "completion"} <= set(per_problem[0])
    assert "Paired comparisons" in report_of("icl_vs_lora_embedded")

    again = study.main([str(STUDIES_DIR / "icl_vs_lora_embedded.yaml"), *overrides, "--no-report"])
    assert again == first and len(evaluation_runs(tmp_path, "icl_vs_lora_embedded")) == len(runs)


@pytest.mark.study
def test_deep_vs_diverse_scores_every_checkpoint_of_equal_size_subsets(small_budget, tmp_path):
    overrides = [*small_budget, "train.max_steps=4", "conditions=["
                 "{name: lora-deep, kind: finetune, finetune: {data_variant: deep, train_sizes: [60]}}, "
                 "{name: lora-diverse, kind: finetune, finetune: {data_variant: diverse, train_sizes: [60]}}]"]
    study.main([str(STUDIES_DIR / "deep_vs_diverse_embedded.yaml"), *overrides])
    runs = evaluation_runs(tmp_path, "deep_vs_diverse_embedded")
    steps = sorted((run.data.tags["condition"], run.data.tags["checkpoint_step"]) for run in runs
                   if "checkpoint_step" in run.data.tags)
    assert steps == [("lora-deep", "2"), ("lora-deep", "4"), ("lora-diverse", "2"), ("lora-diverse", "4")]
    client = mlflow.MlflowClient(tracking(tmp_path))
    # Checkpoints are chosen on the selection part of the problems; test is reported on the rest.
    assert {run.data.tags["benchmark"] for run in runs if "checkpoint_step" in run.data.tags} == {"test-selection"}
    test = by_condition(runs, "test")
    split = json.loads(Path(client.download_artifacts(test["lora-diverse"].info.run_id, "problem_split.json",
                                                      str(tmp_path))).read_text())
    for run in test.values():
        table = json.loads(Path(client.download_artifacts(run.info.run_id, "per_problem.json",
                                                          str(tmp_path / run.info.run_id))).read_text())
        assert [row["task_id"] for row in table] == split["held_out_task_ids"]
    assert not set(split["held_out_task_ids"]) & set(split["selection_task_ids"])
    training = client.search_runs([runs[0].info.experiment_id], "tags.run_kind = 'training'")
    profiles = json.loads(Path(client.download_artifacts(training[0].info.run_id, "data_profiles.json",
                                                         str(tmp_path))).read_text())
    assert profiles["deep"]["mean_depth"] > profiles["diverse"]["mean_depth"]
    assert profiles["diverse"]["distinct_clusters"] > profiles["deep"]["distinct_clusters"]
    report = report_of("deep_vs_diverse_embedded")
    assert "Checkpoint curves" in report
    assert f"test is reported on its {len(split['held_out_task_ids'])} other problems only" in report


@pytest.mark.study
def test_methods_study_compares_prompting_with_full_and_parameter_efficient_fine_tuning(small_budget, tmp_path):
    # The spec's LoRA condition is left out to save a training run: the other studies train LoRA.
    spec = load_study_spec(STUDIES_DIR / "methods_embedded.yaml")
    kept = [condition.model_dump(exclude_none=True) for condition in spec.conditions if condition.name != "lora"]
    study.main([str(STUDIES_DIR / "methods_embedded.yaml"), *small_budget, f"conditions={json.dumps(kept)}"])
    test = by_condition(evaluation_runs(tmp_path, "methods_embedded"), "test")
    assert set(test) == {"zero-shot", "few-shot", "chain-of-thought", "retrieval", "full", "ia3"}
    assert {test[name].data.params["method"] for name in ("full", "ia3")} == {"full", "ia3"}
    assert test["retrieval"].data.params["shot_strategy"] == "bm25"
    for run in test.values():
        assert 0 <= run.data.metrics["bleu"] <= 100 and 0 <= run.data.metrics["codebleu"] <= 1
    report = report_of("methods_embedded")
    assert "Failure categories" in report
    assert "Paired comparisons against zero-shot" in report  # the spec's base condition, whatever its name


class StubJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge: correct when the candidate returns something."""

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        verdict = "CORRECT" if "return" in request["messages"][-1]["content"].split("Candidate")[-1] else "INCORRECT"
        body = json.dumps({"model": "stub-judge", "choices": [{"message": {"role": "assistant",
                                                                           "content": f"VERDICT: {verdict}"}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.mark.study
def test_dataset_size_sweep_is_scored_by_tests_a_judge_and_codebertscore(small_budget, tmp_path, tiny_model):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        study.main([str(STUDIES_DIR / "dataset_size_embedded.yaml"), *small_budget,
                    f"metrics.judge={{base_url: 'http://127.0.0.1:{server.server_port}', model: judge, "
                    "retry_backoff_s: 0.01}", f"metrics.codebertscore_model={tiny_model}",
                    "conditions=[{name: base, kind: base}, "
                    "{name: lora, kind: finetune, finetune: {train_sizes: [100, 200]}}]"])
    finally:
        server.shutdown()
    test = by_condition(evaluation_runs(tmp_path, "dataset_size_embedded"), "test")
    assert set(test) == {"base", "lora-100", "lora-200"}
    assert [test[name].data.params["train_size"] for name in ("lora-100", "lora-200")] == ["100", "200"]
    for run in test.values():
        assert 0 <= run.data.metrics["judge_score"] <= 1 and run.data.metrics["judge_unparsed"] == 0
        assert 0 < run.data.metrics["codebertscore_f1"] <= 1
    records = json.loads(Path(mlflow.MlflowClient(tracking(tmp_path)).download_artifacts(
        test["base"].info.run_id, "judge_records.json", str(tmp_path))).read_text())
    assert records[0]["messages"] and records[0]["answer"].startswith("VERDICT:")
    assert "pass@1 against train_size" in report_of("dataset_size_embedded")


def test_an_interrupted_study_says_so_and_how_to_resume(monkeypatch, capsys):
    class InterruptedRunner:
        finished = {"tiny-llama/base/test/seed=0": 0.25}

        def run(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(study.ray, "init", lambda **kwargs: None)
    monkeypatch.setattr(study, "SandboxPool", lambda *args, **kwargs: None)
    monkeypatch.setattr(study.StudyRunner, "start", lambda *args: InterruptedRunner())
    with pytest.raises(SystemExit) as exit_:
        study.main([str(STUDIES_DIR / "methods_embedded.yaml")])
    assert exit_.value.code == 130
    message = capsys.readouterr().err
    assert "The study was interrupted: 1 evaluation(s) finished" in message and "no report was written" in message
    assert "Run the same command again to resume" in message
