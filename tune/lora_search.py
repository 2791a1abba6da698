"""LoRA search: Ray Tune over LoRA rank, alpha, learning rate and training-set size.

    python tune/lora_search.py [--config configs/lora_search.yaml] [key=value ...]

Each trial is one Ray Train run (``train.finetune``) on a nested subset of the cleaned
instruction data, scored during training by pass@1 in the sandbox on the *selection* problems;
ASHA stops weak trials early. The base model is scored the same way first. The best checkpoint
(by the search metric on the selection problems) and the base model are then scored once on the
held-out problems, and that comparison, with CIs and a paired test, is what the search reports
(``tune.held_out_comparison``). Everything goes to MLflow under one parent run. An interrupted
search says so, logs no final result, and resumes from its Tune state without redoing finished
trials.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import ray
import ray.data
import ray.tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
from ray.tune.search import BasicVariantGenerator
from transformers import AutoTokenizer

from data_pipeline.report import write_data_report
from data_pipeline.splits import nested_size_subsets
from data_pipeline.templates import PromptTemplate
from eval.jail import JailSettings
from eval.ray_pool import SandboxPool
from eval.sandbox import SandboxLimits
from tune.cluster_fit import concurrent_trials
from tune.config import DEFAULT_CONFIG, StudyConfig, load_config
from train.checkpoints import PER_PROBLEM, load_trained_model
from tune.evaluation import PassAtOneEvaluator
from tune.held_out_comparison import HeldOutComparison, compare_held_out
from tune.search_trial import run_trial
from tune.study_inputs import StudyInputs, prepare_study_inputs
from tune.tracking import TrialTracker, log_base_model, start_study_run, tracking_uri
from tune.training_data import TrainingData

HEAD_NODE_RESOURCE = "node:__internal_head__"  # what Ray gives the head node, and it alone
TABLE_COLUMNS = ("trial", "lora_rank", "lora_alpha", "learning_rate", "train_size", "step",
                 "validation_loss", "pass_at_1")


def tokenized_datasets(study: StudyConfig, inputs: StudyInputs) -> dict[str, ray.data.Dataset]:
    """Validation and one nested training subset per size in the search space, tokenized (and
    packed, with ``data.packing``) once for the whole study, so trials start training without any
    data work."""
    data = TrainingData(inputs.model, inputs.data_config)
    train, validation = data.tokenized_splits(inputs.data)
    datasets = {f"train_{size}": data.finished(subset)
                for size, subset in nested_size_subsets(train, study.search.space.train_size).items()}
    return datasets | {"validation": validation}


def search_space(study: StudyConfig) -> dict:
    return {name: ray.tune.choice(values) for name, values in study.search.space.model_dump().items()}


def scheduler(study: StudyConfig):
    if study.search.scheduler == "fifo":
        return FIFOScheduler()
    # max_t past the last step: a trial that finishes returns from fit() by itself, so its Ray Train
    # run shuts down cleanly instead of being stopped by Tune at its final report.
    return ASHAScheduler(time_attr="step", max_t=study.train.max_steps + 1,
                         grace_period=min(study.search.grace_period_steps, study.train.max_steps),
                         reduction_factor=2)


def build_tuner(study: StudyConfig, inputs: StudyInputs, evaluator: PassAtOneEvaluator,
                tracker: TrialTracker) -> ray.tune.Tuner:
    datasets = tokenized_datasets(study, inputs)
    # A trial only drives its Ray Train run, whose workers hold the CPUs/GPUs. It runs on the head
    # node, with the run's controller: a lost worker node then fails only the trials that train on
    # it. (Tune refuses an all-zero request; a thousandth of the head resource is next to none.)
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(run_trial, study=study, model=inputs.model, datasets=datasets, evaluator=evaluator),
        {"CPU": 0, HEAD_NODE_RESOURCE: 0.001})
    study_dir = Path(study.storage_path).resolve() / study.experiment
    if ray.tune.Tuner.can_restore(str(study_dir)):
        print(f"Resuming the study in {study_dir}: finished trials are not run again.")
        return ray.tune.Tuner.restore(str(study_dir), trainable=trainable, resume_errored=True)
    concurrent = concurrent_trials(study)
    print(f"Running up to {concurrent} trial(s) at once.")
    return ray.tune.Tuner(
        trainable,
        param_space=search_space(study),
        tune_config=ray.tune.TuneConfig(
            metric=study.search.metric, mode=study.search.mode, num_samples=study.search.num_samples,
            scheduler=scheduler(study),
            search_alg=BasicVariantGenerator(random_state=study.search.seed,
                                             max_concurrent=concurrent)),
        run_config=ray.tune.RunConfig(name=study.experiment, storage_path=str(study_dir.parent),
                                      callbacks=[tracker],
                                      failure_config=ray.tune.FailureConfig(max_failures=study.search.max_failures)),
    )


class SearchInterrupted(RuntimeError):
    """Stopped before every trial finished (Ctrl-C): its state is saved and no result is logged."""


@dataclass(frozen=True)
class SearchOutcome:
    trials: list[dict]  # one row per trial, best first by the search metric on the selection problems
    base_selection_pass_at_1: float
    comparison: HeldOutComparison | None  # None when no trial reported


def evaluate_model(model_dir: str, evaluator: PassAtOneEvaluator) -> tuple[dict, list[dict]]:
    """A base model or a checkpoint (with its adapter) scored by ``evaluator``."""
    return evaluator(load_trained_model(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir))


def log_data_report(inputs: StudyInputs, study_dir: Path) -> None:
    """The training data's length histograms, kept and removed samples and decontamination report."""
    tokenizer = AutoTokenizer.from_pretrained(inputs.model)
    for path in write_data_report(inputs.data, str(study_dir / "data_report"), tokenizer=tokenizer):
        mlflow.log_artifact(path, artifact_path="data")
    if inputs.data.decontamination_report:
        mlflow.log_artifact(inputs.data.decontamination_report, artifact_path="data")


def trial_table(results: ray.tune.ResultGrid, study: StudyConfig) -> list[dict]:
    """One row per trial: its hyperparameters and its best report by the search metric (the
    earliest of equals whose checkpoint is kept), best first; ties keep the trials' order."""
    metric, maximize = study.search.metric, study.search.mode == "max"
    rows = []
    for result in results:
        history = result.metrics_dataframe
        if history is None or metric not in history:
            continue
        best_value = history[metric].max() if maximize else history[metric].min()
        equals = history[history[metric] == best_value]
        kept = [index for index, path in equals[CHECKPOINT_PATH_KEY].items() if Path(path).is_dir()]
        best = history.loc[kept[0] if kept else equals.index[0]]
        rows.append({"trial": result.metrics["trial_id"], **result.config, "step": int(best["step"]),
                     "validation_loss": float(best["validation_loss"]),
                     "pass_at_1": float(best.get("pass_at_1", float("nan"))),
                     "checkpoint": best[CHECKPOINT_PATH_KEY]})
    return sorted(rows, key=lambda row: row[metric], reverse=maximize)


def candidate_scores(results: ray.tune.ResultGrid, task_ids: list[str]) -> list[list[float]]:
    """Per-problem pass@1 of every evaluated checkpoint of every trial (``selection: on_test``
    keeps them all): the candidates the best was chosen among."""
    scores = []
    for result in results:
        history = result.metrics_dataframe
        for path in ([] if history is None or "pass_at_1" not in history else history[CHECKPOINT_PATH_KEY]):
            by_task = {row["task_id"]: row["pass_at_1"] for row in json.loads(Path(path, PER_PROBLEM).read_text())}
            scores.append([by_task[task_id] for task_id in task_ids])
    return scores


def held_out_comparison(study: StudyConfig, inputs: StudyInputs, results: ray.tune.ResultGrid, best: dict,
                        test_evaluator: PassAtOneEvaluator) -> tuple[HeldOutComparison, dict[str, list[dict]]]:
    """The best checkpoint against the base model on the reported problems, and both per-problem tables."""
    tables = {"base": evaluate_model(inputs.model, test_evaluator)[1],
              "best": evaluate_model(best["checkpoint"], test_evaluator)[1]}
    task_ids = [row["task_id"] for row in tables["base"]]
    base, chosen = ([row["pass_at_1"] for row in tables[name]] for name in ("base", "best"))
    candidates = candidate_scores(results, task_ids) if study.benchmark.selection == "on_test" else None
    label = f"trial {best['trial']} at step {best['step']}"
    return compare_held_out(label, base, chosen, candidates), tables


def format_outcome(outcome: SearchOutcome) -> str:
    lines = ["Trials, chosen on the selection problems:", "  ".join(f"{name:>15}" for name in TABLE_COLUMNS)]
    for row in outcome.trials:
        lines.append("  ".join(f"{row[name]:>15.4g}" if isinstance(row[name], float) else f"{row[name]:>15}"
                               for name in TABLE_COLUMNS))
    lines.append(f"base model pass_at_1 on the selection problems = {outcome.base_selection_pass_at_1:.4f}")
    if outcome.comparison is not None:
        lines += ["", *outcome.comparison.lines()]
    return "\n".join(lines)


def evaluators(study: StudyConfig, inputs: StudyInputs) -> tuple[PassAtOneEvaluator, PassAtOneEvaluator]:
    """pass@1 on the selection problems (during training) and on the reported ones (at the end),
    judged in one sandbox pool."""
    pool = SandboxPool(study.sandbox.workers, SandboxLimits(timeout_s=study.sandbox.timeout_s),
                       num_cpus_per_worker=study.sandbox.cpus_per_worker,
                       settings=JailSettings(isolation=study.sandbox.isolation))
    return tuple(PassAtOneEvaluator(problems, pool, study.benchmark.prompt_style, study.benchmark.max_new_tokens,
                                    study.benchmark.generation_batch_size,
                                    PromptTemplate.from_config(inputs.data_config))
                 for problems in (inputs.selection_problems, inputs.test_problems))


def run_search(study: StudyConfig) -> SearchOutcome:
    """Runs the study (or resumes it) on the connected Ray cluster. Raises ``SearchInterrupted``
    when it is stopped before every trial finished."""
    inputs = prepare_study_inputs(study)
    uri = tracking_uri(study.mlflow_tracking_uri)
    mlflow.set_tracking_uri(uri)
    evaluator, test_evaluator = evaluators(study, inputs)
    study_dir = Path(study.storage_path).resolve() / study.experiment
    params = {"model": inputs.model, "selection": study.benchmark.selection,
              "selection_problems": len(inputs.selection_problems), "test_problems": len(inputs.test_problems),
              "data_content_hash": inputs.data.content_hash, **inputs.data.stats}
    with start_study_run(study.experiment, study_dir, params) as parent:
        if not mlflow.MlflowClient().list_artifacts(parent.info.run_id, "data"):  # else logged by an earlier invocation
            log_data_report(inputs, study_dir)
            mlflow.log_dict(inputs.selection_record, "problem_split.json")
        base_pass_at_1 = mlflow.get_run(parent.info.run_id).data.metrics.get("base_pass_at_1")
        if base_pass_at_1 is None:  # not yet scored by an earlier, interrupted invocation
            base_metrics, base_table = evaluate_model(inputs.model, evaluator)
            log_base_model(parent.info.run_id, inputs.model, base_metrics, base_table)
            base_pass_at_1 = base_metrics["pass_at_1"]
            mlflow.log_metric("base_pass_at_1", base_pass_at_1)
        tracker = TrialTracker(uri, study.experiment, parent.info.run_id, study.search.metric, study.search.mode)
        results = build_tuner(study, inputs, evaluator, tracker).fit()
        if results.errors:
            raise RuntimeError(f"{len(results.errors)} trial(s) failed; first error:\n{results.errors[0]}")
        finished = results.num_terminated - len(tracker.cut_short)
        if finished < study.search.num_samples:
            tracker.mark_unfinished_runs_killed()
            mlflow.end_run("KILLED")
            raise SearchInterrupted(
                f"The search was interrupted: {finished} of {study.search.num_samples} trials finished, "
                f"and no result was logged. Its state is saved in {study_dir}; run the same command again to "
                "resume (finished trials are not run again).")
        rows = trial_table(results, study)
        mlflow.log_dict([{k: v for k, v in row.items() if k != "checkpoint"} for row in rows], "trials.json")
        comparison = None
        if rows:
            comparison, tables = held_out_comparison(study, inputs, results, rows[0], test_evaluator)
            mlflow.log_metrics(comparison.metrics())
            mlflow.set_tags({"verdict": comparison.verdict, "chosen_checkpoint": comparison.chosen})
            for name, table in tables.items():
                mlflow.log_dict(table, f"test/{name}_per_problem.json")
    return SearchOutcome(rows, base_pass_at_1, comparison)


def main(argv: list[str] | None = None) -> SearchOutcome:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    study = load_config(args.config, args.overrides)
    ray.init(ignore_reinit_error=True, log_to_driver=False)
    outcome = run_search(study)
    print(format_outcome(outcome))
    return outcome


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SearchInterrupted as interrupted:
        print(interrupted, file=sys.stderr)
        sys.exit(130)  # the shell's code for a run stopped by Ctrl-C
