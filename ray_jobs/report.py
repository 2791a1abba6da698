"""One MLflow experiment (one study) as a self-contained HTML report.

    python -m ray_jobs.report EXPERIMENT [--tracking-uri URI] [--out DIR] [--reference CONDITION]

(An experiment holding a LoRA search, ``tune/lora_search.py``, and no study evaluations gets the
search's report instead: ``ray_jobs.search_report``.)

Reads the evaluation runs the study runner logged (tag ``run_kind=evaluation``, tags ``condition``,
``benchmark``, ``model``, optional ``checkpoint_step`` and ``candidate_of``; each with a
``per_problem.json`` artifact), and writes DIR/report.html (default
``outputs/reports/EXPERIMENT/``): pass@1 per condition and benchmark with bootstrap CIs, paired
comparisons against a reference condition, plots of the swept parameters, checkpoint curves, failure
categories and difficulty, and the problems the conditions disagree on. Figures are embedded as
base64 PNGs, so the file opens offline and can be mailed. The same file is logged as the artifact of
a run tagged ``run_kind=report`` in the experiment.

Runs of one condition and benchmark with different ``seed`` params are averaged per problem before
any statistic is computed; a run with a ``checkpoint_step`` tag only feeds the checkpoint curves.

The report states how each result was obtained (the params ``tune.study_runner`` logs): where
shots, checkpoints and search trials were chosen (``selection_mode``, ``chosen_on``, the split of a
benchmark into a selection and a held-out part), the training data's content hash and the sandbox
isolation. A condition chosen on the very problems it is reported on (``selection.mode: on_test``)
is labelled so, and compared with the reference by a selection-aware test over the candidates it
was chosen among (its checkpoint runs, or the runs tagged ``candidate_of`` it), not a plain one.

The module reads top-down: load the runs, build tidy frames, compute the tables, draw the
figures, render the HTML, write and log it.
"""

import argparse
import base64
import io
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import jinja2
import mlflow
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from eval.significance import (PairedComparison, SelectionAwareResult, bootstrap_ci, compare_paired, holm_adjust,
                               selection_aware_test)
from tune.tracking import tracking_uri as resolve_tracking_uri

EVALUATION_FILTER = "tags.run_kind = 'evaluation'"
PER_PROBLEM_ARTIFACT = "per_problem.json"
REPORT_FILE = "report.html"
DEFAULT_OUT_ROOT = Path("outputs/reports")
# Params of an evaluation run the report reads; any other param is ignored.
PARAMS = ("method", "shots", "shot_strategy", "chain_of_thought", "lora_rank", "lora_alpha", "learning_rate",
          "train_size", "data_variant", "seed")
# Params that say how a result was obtained (selection protocol, split, data, sandbox).
PROVENANCE = ("selection_mode", "selection_benchmarks", "chosen_on", "split_of", "split_part", "split_fraction",
              "split_seed", "split_stratified_by", "data_content_hash", "sandbox_isolation")
# Metrics besides pass@1 shown (when logged) in the second table.
OTHER_METRICS = ("pass_at_5", "bleu", "codebleu", "codebertscore_f1", "judge_score")
# Params whose effect on pass@1 gets a plot, when conditions differ in them.
SWEPT_PARAMS = ("train_size", "lora_rank", "shots")
DIFFICULTY_ORDER = ("easy", "medium", "hard")
ALL_PASSED = "all samples passed"
# Failure categories beyond this many (by share) are drawn as one "other" category.
MAX_FAILURE_CATEGORIES = 8
CONFIDENCE = 0.95
# What a result chosen among candidates on the very problems it is reported on is labelled.
SELECTED_LABEL = "selected on the reported problems"


class ReportError(ValueError):
    """The experiment cannot be reported on; the message says why and what exists instead."""


# ----------------------------------------------------------------------------------------------
# Loading: evaluation runs and their per-problem tables, as two tidy frames
# ----------------------------------------------------------------------------------------------

@dataclass
class Study:
    """The evaluation runs of one experiment.

    ``runs``: one row per run (run_id, condition, benchmark, model, checkpoint_step, candidate_of,
    the PARAMS and PROVENANCE, pass_at_1 and the OTHER_METRICS that were logged). ``problems``: one
    row per run and problem (run_id, condition, benchmark, checkpoint_step, candidate_of, task_id, n,
    c, pass_at_1, dominant_failure, difficulty). ``skipped``: runs left out, with the reason.
    """

    experiment: str
    experiment_id: str
    runs: pd.DataFrame
    problems: pd.DataFrame
    skipped: list[str] = field(default_factory=list)

    @property
    def conditions(self) -> list[str]:
        """Conditions with a final (non-checkpoint) run, in natural order."""
        return sorted(final_runs(self.runs)["condition"].unique(), key=natural_key)


def load_study(client: mlflow.MlflowClient, experiment: str) -> Study:
    """Reads every evaluation run of ``experiment`` and its ``per_problem.json``."""
    experiment_id = find_experiment_id(client, experiment)
    records, tables, skipped = [], [], []
    with tempfile.TemporaryDirectory() as download_dir:
        for run in search_evaluation_runs(client, experiment_id):
            record = run_record(run)
            if record["condition"] is None or record["benchmark"] is None:
                skipped.append(f"{record['run_id']}: no condition or benchmark tag")
            elif not (table := download_per_problem(client, record["run_id"], download_dir)):
                skipped.append(f"{record['run_id']} ({record['condition']}, {record['benchmark']}): "
                               f"no or an empty {PER_PROBLEM_ARTIFACT}")
            else:
                records.append(record)
                tables.append(pd.DataFrame(table).assign(run_id=record["run_id"]))
    if not records:
        raise ReportError(f"experiment {experiment!r} has no evaluation runs with a {PER_PROBLEM_ARTIFACT} "
                          f"(runs tagged run_kind=evaluation){'; skipped: ' + '; '.join(skipped) if skipped else ''}")
    runs = pd.DataFrame(records)
    if final_runs(runs).empty:
        raise ReportError(f"experiment {experiment!r} has only checkpoint evaluations (tag checkpoint_step); "
                          "a condition's final evaluation is a run without that tag")
    return Study(experiment, experiment_id, runs, tidy_problems(pd.concat(tables, ignore_index=True), runs), skipped)


def find_experiment_id(client: mlflow.MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(existing.name for existing in client.search_experiments())
        raise ReportError(f"no experiment named {experiment!r}; existing experiments: {', '.join(names) or 'none'}")
    return found.experiment_id


def search_evaluation_runs(client: mlflow.MlflowClient, experiment_id: str) -> list[Run]:
    """Every run tagged ``run_kind=evaluation``, following MLflow's pagination."""
    runs, page_token = [], None
    while True:
        page = client.search_runs([experiment_id], EVALUATION_FILTER, max_results=1000, page_token=page_token)
        runs.extend(page)
        page_token = page.token
        if not page_token:
            return runs


def run_record(run: Run) -> dict:
    """A run's tags, PARAMS and metrics as one flat row (params stay the strings MLflow stores)."""
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    step = tags.get("checkpoint_step")
    return {
        "run_id": run.info.run_id,
        "condition": tags.get("condition"),
        "benchmark": tags.get("benchmark"),
        "model": tags.get("model", ""),
        "checkpoint_step": int(step) if step not in (None, "") else None,
        "candidate_of": tags.get("candidate_of"),
        **{name: params.get(name) for name in (*PARAMS, *PROVENANCE)},
        **{name: metrics[name] for name in ("pass_at_1", *OTHER_METRICS) if name in metrics},
    }


def download_per_problem(client: mlflow.MlflowClient, run_id: str, download_dir: str) -> list[dict] | None:
    """The run's per-problem rows, or None when it has no ``per_problem.json``. Accepts the
    documented list of rows and the ``{"columns", "data"}`` layout ``mlflow.log_table`` writes."""
    try:
        path = client.download_artifacts(run_id, PER_PROBLEM_ARTIFACT, str(Path(download_dir) / run_id))
    except (MlflowException, OSError):
        return None
    table = json.loads(Path(path).read_text())
    if isinstance(table, dict):
        return [dict(zip(table["columns"], row)) for row in table["data"]]
    return table


def tidy_problems(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per-problem rows with their run's condition, benchmark and checkpoint step; rows without
    pass@1 (a benchmark without tests, scored by the other metrics only) are left out."""
    optional = {"dominant_failure": "", "difficulty": None, "n": np.nan, "c": np.nan, "pass_at_1": np.nan}
    table = table.assign(**{name: table.get(name, pd.Series(default, index=table.index))
                            for name, default in optional.items()})
    table = table[table["pass_at_1"].notna()].copy()
    table["dominant_failure"] = table["dominant_failure"].fillna("").astype(str)
    table["task_id"] = table["task_id"].astype(str)
    table["pass_at_1"] = table["pass_at_1"].astype(float)
    keys = runs[["run_id", "condition", "benchmark", "checkpoint_step", "candidate_of"]]
    columns = ["run_id", "task_id", "n", "c", "pass_at_1", "dominant_failure", "difficulty"]
    return table[columns].merge(keys, on="run_id")


# ----------------------------------------------------------------------------------------------
# Tables: pass@1 with CIs, other metrics, paired comparisons, per-problem disagreements
# ----------------------------------------------------------------------------------------------

def final_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the runs that give a condition's answer: those without a checkpoint step."""
    return frame[frame["checkpoint_step"].isna()]


def problem_scores(problems: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark, condition and problem of the final runs: pass@1 averaged over seeds,
    c and n summed over seeds, and the problem's difficulty."""
    grouped = final_runs(problems).groupby(["benchmark", "condition", "task_id"])
    return grouped.agg(pass_at_1=("pass_at_1", "mean"), c=("c", "sum"), n=("n", "sum"),
                       difficulty=("difficulty", "first")).reset_index()


def choose_reference(conditions: list[str], requested: str | None) -> str:
    """The requested reference condition, else "base" when present, else the first of ``conditions``."""
    if requested is not None and requested not in conditions:
        raise ReportError(f"reference condition {requested!r} not in this experiment; conditions: "
                          f"{', '.join(conditions)}")
    return requested or ("base" if "base" in conditions else conditions[0])


def condition_order(conditions, reference: str) -> list[str]:
    """The reference first, then the other conditions in natural order: the row order of every table."""
    return [reference, *sorted(set(conditions) - {reference}, key=natural_key)]


def natural_key(name: str) -> list:
    """Sorts numbers within names by value: lora-r8 before lora-r16, n100 before n1000."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def pass_rate_summary(scores: pd.DataFrame, problems: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark and condition: mean pass@1 over problems, its bootstrap CI, the number
    of problems, the pass@1 of each seed's run, and the condition's PARAMS and candidate_of (from
    its first run)."""
    per_run = final_runs(problems).groupby(["benchmark", "condition", "run_id"])["pass_at_1"].mean()
    params = final_runs(runs).groupby(["benchmark", "condition"])[[*PARAMS, "candidate_of"]].first()
    rows = []
    for (benchmark, condition), group in scores.groupby(["benchmark", "condition"]):
        low, high = bootstrap_ci(group["pass_at_1"].to_numpy(), confidence=CONFIDENCE)
        rows.append({"benchmark": benchmark, "condition": condition, "pass_at_1": group["pass_at_1"].mean(),
                     "ci_low": low, "ci_high": high, "n_problems": len(group),
                     "seed_pass_at_1": sorted(per_run.loc[benchmark, condition].tolist()),
                     **params.loc[(benchmark, condition)].to_dict()})
    return pd.DataFrame(rows)


def main_table(summary: pd.DataFrame, conditions: list[str], benchmarks: list[str],
               selected: set[tuple[str, str]]) -> list[list]:
    """Rows of [condition, cell per benchmark]; a cell is (pass@1 [CI] in %, detail) or None. The
    detail says when the result was ``selected`` on the problems it is reported on, and which
    condition a candidate was chosen for."""
    if summary.empty:  # every benchmark is without tests
        return []
    by_key = summary.set_index(["condition", "benchmark"])
    rows = []
    for condition in conditions:
        cells = []
        for benchmark in benchmarks:
            if (condition, benchmark) not in by_key.index:
                cells.append(None)
                continue
            row = by_key.loc[(condition, benchmark)]
            value = f"{100 * row['pass_at_1']:.1f} [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
            detail = [pass_rate_detail(row["n_problems"], row["seed_pass_at_1"])]
            detail += [SELECTED_LABEL] if (benchmark, condition) in selected else []
            detail += [f"candidate of {row['candidate_of']}"] if isinstance(row["candidate_of"], str) else []
            cells.append((value, " · ".join(detail)))
        rows.append([condition, cells])
    return rows


def pass_rate_detail(n_problems: int, seed_pass_at_1: list[float]) -> str:
    """"n=41", plus the range of the seeds' pass@1 when several seeds were averaged."""
    if len(seed_pass_at_1) < 2:
        return f"n={n_problems}"
    return (f"n={n_problems} · {len(seed_pass_at_1)} seeds: "
            f"{100 * min(seed_pass_at_1):.1f}–{100 * max(seed_pass_at_1):.1f}")


class Table(NamedTuple):
    headers: list[str]
    rows: list[list[str]]


def other_metrics_table(runs: pd.DataFrame, conditions: list[str]) -> Table:
    """The OTHER_METRICS logged by the final runs, averaged over seeds; a column per benchmark and
    metric, a row per condition. Empty when none of them was logged."""
    metrics = [name for name in OTHER_METRICS if name in runs and final_runs(runs)[name].notna().any()]
    if not metrics:
        return Table([], [])
    means = final_runs(runs).groupby(["condition", "benchmark"])[metrics].mean()
    columns = [(benchmark, metric) for benchmark in sorted(means.index.unique("benchmark"))
               for metric in metrics if means.xs(benchmark, level="benchmark")[metric].notna().any()]
    rows = [[condition, *(format_metric(means, condition, benchmark, metric) for benchmark, metric in columns)]
            for condition in conditions]
    return Table([f"{benchmark} · {metric}" for benchmark, metric in columns], rows)


def format_metric(means: pd.DataFrame, condition: str, benchmark: str, metric: str) -> str:
    value = means[metric].get((condition, benchmark), np.nan)
    return "–" if pd.isna(value) else f"{value:.3f}"


def selected_on_reported(runs: pd.DataFrame) -> set[tuple[str, str]]:
    """(benchmark, condition) of the final results whose condition chose its shots, checkpoint or
    search trial on that benchmark's own problems (``chosen_on``, as ``selection.mode: on_test``
    does); the candidates it chose among are not results of their own."""
    final = final_runs(runs)
    final = final[final["candidate_of"].isna()].dropna(subset=["chosen_on"])
    return {(benchmark, condition) for benchmark, condition, chosen_on
            in final[["benchmark", "condition", "chosen_on"]].itertuples(index=False)
            if benchmark in chosen_on.split(",")}


def candidate_scores(problems: pd.DataFrame, benchmark: str, condition: str) -> pd.DataFrame:
    """What ``condition`` chose among on ``benchmark``: its checkpoint runs, or the runs tagged
    ``candidate_of`` it (ICL's k). Per-problem pass@1 averaged over seeds, a column per candidate."""
    on_benchmark = problems[problems["benchmark"] == benchmark]
    checkpoints = (on_benchmark["condition"] == condition) & on_benchmark["checkpoint_step"].notna()
    candidates = on_benchmark[checkpoints | (on_benchmark["candidate_of"] == condition)]
    name = candidates["checkpoint_step"].map("step {:.0f}".format, na_action="ignore").fillna(candidates["condition"])
    return candidates.assign(candidate=name).pivot_table(index="task_id", columns="candidate", values="pass_at_1",
                                                         aggfunc="mean")


@dataclass
class Comparison:
    """A condition against the reference on one benchmark, with its Holm-adjusted p-value. A
    condition selected on these problems is ``selected``; its p-value is then the selection-aware
    one, over the candidates it was chosen among (None when they were not logged as evaluations)."""

    benchmark: str
    condition: str
    result: PairedComparison
    selected: bool = False
    selection_aware: SelectionAwareResult | None = None
    holm_p_value: float = float("nan")

    @property
    def p_value(self) -> float:
        return self.result.p_value if self.selection_aware is None else self.selection_aware.p_value


def paired_comparisons(scores: pd.DataFrame, problems: pd.DataFrame, reference: str, conditions: list[str],
                       selected: set[tuple[str, str]]) -> list[Comparison]:
    """Every condition against the reference, per benchmark, on the problems both were scored on
    (a candidate of another condition is not compared); p-values Holm-adjusted across all
    comparisons in the report."""
    candidates = set(problems.loc[problems["candidate_of"].notna(), "condition"])
    comparisons = []
    for benchmark, on_benchmark in scores.groupby("benchmark"):
        by_condition = on_benchmark.pivot(index="task_id", columns="condition", values="pass_at_1")
        if reference not in by_condition:
            continue
        for condition in conditions:
            if condition == reference or condition not in by_condition or condition in candidates:
                continue
            shared = by_condition[[reference, condition]].dropna()
            if shared.empty:
                continue
            result = compare_paired(shared[reference].to_numpy(), shared[condition].to_numpy(), confidence=CONFIDENCE)
            comparison = Comparison(benchmark, condition, result, selected=(benchmark, condition) in selected)
            if comparison.selected:
                comparison.selection_aware = selection_aware_comparison(
                    candidate_scores(problems, benchmark, condition), shared[reference])
            comparisons.append(comparison)
    for comparison, adjusted in zip(comparisons, holm_adjust([c.p_value for c in comparisons])):
        comparison.holm_p_value = adjusted
    return comparisons


def selection_aware_comparison(candidates: pd.DataFrame, reference: pd.Series) -> SelectionAwareResult | None:
    """The best of the candidates against the reference, on the problems all of them were scored on."""
    if candidates.empty:
        return None
    shared = candidates.join(reference.rename("reference"), how="inner").dropna()
    if shared.empty:
        return None
    return selection_aware_test(shared[candidates.columns].T.to_numpy(), shared["reference"].to_numpy())


def comparison_row(comparison: Comparison) -> dict:
    """A comparison's table cells as text, and whether it is too small to tell the conditions apart."""
    result, selection_aware = comparison.result, comparison.selection_aware
    low, high = result.ci
    if comparison.selected and selection_aware is None:
        reading = (f"{SELECTED_LABEL}; its candidates were not logged as evaluations, so this p-value does "
                   "not account for the choice")
    elif result.too_small_to_tell:
        reading = (f"a difference under {100 * result.minimum_detectable_difference:.1f} pts would not "
                   f"likely show on {result.n_problems} problems")
    elif comparison.holm_p_value < 1 - CONFIDENCE:
        reading = f"differs (Holm p < {1 - CONFIDENCE:.2g})"
    else:
        reading = (f"no difference detected; {100 * result.minimum_detectable_difference:.1f} pts "
                   f"would likely have shown")
    if selection_aware is not None:
        reading = f"{SELECTED_LABEL}: {reading}"
        test = f"selection-aware (best of {selection_aware.n_candidates})"
    else:
        test = "McNemar" if result.test == "mcnemar" else "paired permutation"
    return {
        "condition": comparison.condition, "n": result.n_problems,
        "reference": f"{100 * result.mean_a:.1f}", "candidate": f"{100 * result.mean_b:.1f}",
        "difference": f"{100 * result.difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]",
        "test": test, "p": format_p(comparison.p_value), "holm_p": format_p(comparison.holm_p_value),
        "effect": f"{result.effect_size:.2f} ({result.effect_size_measure})",
        "too_small": result.too_small_to_tell, "reading": reading,
        "summary": (selection_aware or result).summary(),
    }


# ----------------------------------------------------------------------------------------------
# Provenance: how the results were obtained
# ----------------------------------------------------------------------------------------------

PROTOCOL = ["selection_mode", "selection_benchmarks", "split_of", "split_fraction", "split_seed"]


def selection_statements(runs: pd.DataFrame, problems: pd.DataFrame) -> list[str]:
    """One sentence per selection protocol the final runs recorded: where shots, checkpoints and
    search trials were chosen, and on which problems the results are reported."""
    final = final_runs(runs)
    counts = problems.groupby("benchmark")["task_id"].nunique()
    statements = []
    for protocol, group in final.groupby(PROTOCOL, dropna=False):
        mode, chooser, split_of, fraction, seed = (None if pd.isna(value) else value for value in protocol)
        if mode is None:
            statements.append("These runs do not record where their shots, checkpoints or search trials were "
                              "chosen (they were logged before studies recorded it).")
        elif mode == "on_test":
            statements.append(f"Chosen on the reported problems (selection.mode: on_test): shots, checkpoints and "
                              f"search trials were chosen on {chooser}, the very problems they are reported on; "
                              f"those results are marked \u201c{SELECTED_LABEL}\u201d.")
        elif split_of is not None:
            stratified_by = group["split_stratified_by"].dropna()
            strata = f", stratified by {stratified_by.iloc[0]}" if not stratified_by.empty else ""
            statements.append(f"Held out: shots, checkpoints and search trials were chosen on {chooser} "
                              f"({counts.get(chooser, 0)} problems of {split_of}, split with seed {seed}, fraction "
                              f"{fraction}{strata}); {split_of} is reported on its {counts.get(split_of, 0)} "
                              "other problems only.")
        elif chooser == "none":
            statements.append("Nothing was chosen by pass@1: every result is of a fixed condition.")
        else:
            statements.append(f"Held out: shots, checkpoints and search trials were chosen on {chooser}; "
                              "the test benchmarks are reported on all their problems.")
    return statements


def recorded_values(runs: pd.DataFrame, param: str) -> str:
    """The distinct values of ``param`` among the final runs, or "not recorded"."""
    values = sorted(set(final_runs(runs)[param].dropna()))
    return ", ".join(values) or "not recorded"


def format_p(p_value: float) -> str:
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def disagreement_table(on_benchmark: pd.DataFrame, conditions: list[str]) -> Table:
    """The problems of one benchmark the conditions score differently on: a cell is ✓ (every
    sample passed), ✗ (none did) or c/n summed over seeds; "–" where a condition lacks the problem.
    Sorted by how many conditions solve the problem (sum of pass@1 over conditions), most first,
    then by task id."""
    present = [condition for condition in conditions if condition in set(on_benchmark["condition"])]
    scores = on_benchmark.pivot(index="task_id", columns="condition", values="pass_at_1")[present]
    cells = on_benchmark.assign(cell=on_benchmark.apply(solved_mark, axis=1))
    cells = cells.pivot(index="task_id", columns="condition", values="cell")[present].fillna("–")
    disagree = scores.max(axis=1) > scores.min(axis=1)
    solved_by = scores[disagree].sum(axis=1).items()
    order = sorted(solved_by, key=lambda item: (-item[1], natural_key(item[0])))
    rows = [[task_id, *cells.loc[task_id].tolist(), f"{solved:.3g}"] for task_id, solved in order]
    return Table(["task_id", *present, "solved by"], rows)


def solved_mark(score: pd.Series) -> str:
    if score["pass_at_1"] == 1:
        return "✓"
    if score["pass_at_1"] == 0:
        return "✗"
    return f"{int(score['c'])}/{int(score['n'])}"


# ----------------------------------------------------------------------------------------------
# Figures: matplotlib Figure objects (no pyplot state), embedded as base64 PNG
# ----------------------------------------------------------------------------------------------

@dataclass
class FigureImage:
    title: str
    caption: str
    png_base64: str


def new_figure(n_panels: int) -> tuple[Figure, list]:
    """A figure with one panel per benchmark, side by side, drawn by the Agg backend."""
    figure = Figure(figsize=(4.8 * n_panels, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(figure.subplots(1, n_panels, squeeze=False)[0])


def png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def sweep_figure(summary: pd.DataFrame, param: str) -> Figure | None:
    """pass@1 (with CI error bars) against ``param``, a panel per benchmark on which at least two
    conditions differ in it; a line per ``method`` param. None when no benchmark qualifies."""
    swept = summary.dropna(subset=[param])
    swept = swept.assign(value=pd.to_numeric(swept[param], errors="coerce")).dropna(subset=["value"])
    benchmarks = [benchmark for benchmark, group in swept.groupby("benchmark") if group["value"].nunique() > 1]
    if not benchmarks:
        return None
    figure, axes = new_figure(len(benchmarks))
    for ax, benchmark in zip(axes, benchmarks):
        on_benchmark = swept[swept["benchmark"] == benchmark].sort_values("value")
        for method, line in on_benchmark.groupby(on_benchmark["method"].fillna("")):
            ax.errorbar(line["value"], 100 * line["pass_at_1"], fmt="o-", capsize=3, label=method or None,
                        yerr=[100 * (line["pass_at_1"] - line["ci_low"]), 100 * (line["ci_high"] - line["pass_at_1"])])
            for _, point in line.iterrows():
                ax.annotate(point["condition"], (point["value"], 100 * point["pass_at_1"]), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
        if on_benchmark["value"].min() > 0 and on_benchmark["value"].max() >= 10 * on_benchmark["value"].min():
            ax.set_xscale("log")
        ax.set(title=benchmark, xlabel=param, ylabel="pass@1 (%)")
        if on_benchmark["method"].notna().any():
            ax.legend(fontsize=7, title="method", title_fontsize=7)
    return figure


def checkpoint_figure(problems: pd.DataFrame, summary: pd.DataFrame) -> Figure | None:
    """pass@1 against checkpoint step, a line per condition and a panel per benchmark, with the
    condition's final (selected) pass@1 as a dotted line. None without checkpoint runs."""
    checkpoints = problems.dropna(subset=["checkpoint_step"])
    if checkpoints.empty:
        return None
    per_problem = checkpoints.groupby(["benchmark", "condition", "checkpoint_step", "task_id"])["pass_at_1"].mean()
    curves = per_problem.groupby(["benchmark", "condition", "checkpoint_step"]).mean().reset_index()
    final = summary.set_index(["benchmark", "condition"])["pass_at_1"]
    benchmarks = sorted(curves["benchmark"].unique())
    figure, axes = new_figure(len(benchmarks))
    for ax, benchmark in zip(axes, benchmarks):
        for condition, curve in curves[curves["benchmark"] == benchmark].groupby("condition"):
            (line,) = ax.plot(curve["checkpoint_step"], 100 * curve["pass_at_1"], "o-", label=condition)
            if (benchmark, condition) in final.index:
                ax.axhline(100 * final[(benchmark, condition)], color=line.get_color(), linestyle=":",
                           label=f"{condition} (final)")
        ax.set(title=benchmark, xlabel="checkpoint step", ylabel="pass@1 (%)")
        ax.legend(fontsize=7)
    return figure


def failure_figure(problems: pd.DataFrame, conditions: list[str]) -> Figure:
    """Share of problems by dominant failure, a stacked bar per condition and a panel per benchmark.
    Seeds are pooled, each run weighing as one set of problems."""
    final = final_runs(problems)
    category = final["dominant_failure"].replace("", ALL_PASSED)
    runs_per_condition = final.groupby(["benchmark", "condition"])["run_id"].transform("nunique")
    problems_per_run = final.groupby("run_id")["task_id"].transform("size")
    weights = final.assign(category=category, share=100 / (runs_per_condition * problems_per_run))
    shares = weights.pivot_table(index=["benchmark", "condition"], columns="category", values="share",
                                 aggfunc="sum", fill_value=0.0)
    shares = ordered_categories(shares)
    benchmarks = sorted(shares.index.unique("benchmark"))
    figure, axes = new_figure(len(benchmarks))
    colors = {name: f"C{index % 10}" for index, name in enumerate(shares.columns)}
    for ax, benchmark in zip(axes, benchmarks):
        on_benchmark = shares.loc[benchmark].reindex([c for c in conditions if c in shares.loc[benchmark].index])
        bottom = np.zeros(len(on_benchmark))
        for name in shares.columns:
            ax.bar(on_benchmark.index, on_benchmark[name], bottom=bottom, label=name, color=colors[name])
            bottom += on_benchmark[name].to_numpy()
        ax.set(title=benchmark, ylabel="problems (%)", ylim=(0, 100))
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return figure


def ordered_categories(shares: pd.DataFrame) -> pd.DataFrame:
    """The share columns with "all samples passed" first, then the failure categories by overall
    share; beyond MAX_FAILURE_CATEGORIES the rarest are summed into one "other" column."""
    failures = shares.drop(columns=[ALL_PASSED], errors="ignore").sum().sort_values(ascending=False).index.tolist()
    if len(failures) > MAX_FAILURE_CATEGORIES:
        rare = failures[MAX_FAILURE_CATEGORIES - 1:]
        shares = shares.assign(other=shares[rare].sum(axis=1))
        failures = [*failures[:MAX_FAILURE_CATEGORIES - 1], "other"]
    return shares[[ALL_PASSED, *failures] if ALL_PASSED in shares else failures]


def difficulty_figure(scores: pd.DataFrame, conditions: list[str]) -> Figure | None:
    """pass@1 by difficulty, grouped bars per condition and a panel per benchmark that has
    difficulties. None when no problem has one."""
    rated = scores.dropna(subset=["difficulty"])
    if rated.empty:
        return None
    rates = rated.groupby(["benchmark", "difficulty", "condition"])["pass_at_1"].mean()
    benchmarks = sorted(rated["benchmark"].unique())
    figure, axes = new_figure(len(benchmarks))
    for ax, benchmark in zip(axes, benchmarks):
        on_benchmark = rates.loc[benchmark].unstack("condition")
        levels = [level for level in DIFFICULTY_ORDER if level in on_benchmark.index]
        on_benchmark = on_benchmark.reindex(levels + sorted(set(on_benchmark.index) - set(levels)))
        present = [condition for condition in conditions if condition in on_benchmark]
        width = 0.8 / len(present)
        for index, condition in enumerate(present):
            positions = np.arange(len(on_benchmark)) + (index - (len(present) - 1) / 2) * width
            ax.bar(positions, 100 * on_benchmark[condition].fillna(0), width, label=condition)
        ax.set_xticks(np.arange(len(on_benchmark)), on_benchmark.index)
        ax.set(title=benchmark, ylabel="pass@1 (%)", ylim=(0, 100))
        ax.legend(fontsize=7)
    return figure


def draw_figures(study: Study, scores: pd.DataFrame, summary: pd.DataFrame,
                 conditions: list[str]) -> list[FigureImage]:
    """Every figure that has data, in report order, as embedded PNGs."""
    drawn = [(f"pass@1 against {param}", f"Conditions that differ in {param}; error bars are {CONFIDENCE:.0%} "
              f"bootstrap CIs over problems.", sweep_figure(summary, param)) for param in SWEPT_PARAMS]
    drawn += [
        ("Checkpoint curves", "pass@1 of intermediate checkpoints on the problems they were chosen on; a dotted "
         "line is the condition's final result on the same problems (none where it is reported on held-out ones).",
         checkpoint_figure(study.problems, summary)),
        ("Failure categories", "Each problem's most common non-passing sandbox verdict (final runs).",
         failure_figure(study.problems, conditions)),
        ("Pass rate by difficulty", "Mean pass@1 per difficulty level.", difficulty_figure(scores, conditions)),
    ]
    return [FigureImage(title, caption, png_base64(figure)) for title, caption, figure in drawn if figure is not None]


# ----------------------------------------------------------------------------------------------
# HTML: one Jinja2 template; autoescaping escapes every string that came from MLflow
# ----------------------------------------------------------------------------------------------

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>{{ experiment }} · study report</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
  table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
  th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
  th { background: #f3f3f3; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .detail { display: block; color: #666; font-size: 0.8rem; }
  tr.too-small { background: #fff4d6; }
  .badge { display: inline-block; padding: 0.1rem 0.4rem; border-radius: 0.3rem; font-size: 0.8rem; }
  .badge.warn { background: #f0b429; color: #222; }
  figure { margin: 1rem 0 2rem; }
  figure img { max-width: 100%; }
  .note { color: #666; }
</style>
</head>
<body>
<h1>Study report: {{ experiment }}</h1>
<ul>
  <li>{{ conditions | length }} conditions: {{ conditions | join(", ") }} (reference: {{ reference }})</li>
  <li>{{ benchmarks | length }} benchmarks:
    {% for name, count in benchmarks.items() %}{{ name }} ({{ count }} problems)
    {%- if not loop.last %}, {% endif %}{% endfor %}</li>
  {% if without_tests %}<li>Without tests, scored by the other metrics only: {{ without_tests | join(", ") }}</li>
  {% endif %}
  <li>Models: {{ models | join(", ") or "not tagged" }}</li>
  <li id="selection">Selection: {{ selection | join(" ") }}</li>
  <li>Training data content hash: {{ data_hash }}; sandbox isolation: {{ isolation }}</li>
  <li>Generated {{ generated }}</li>
  {% if skipped %}<li>Skipped runs: {{ skipped | join("; ") }}</li>{% endif %}
</ul>

<h2>pass@1 by condition and benchmark</h2>
{% if benchmarks %}
<p class="note">pass@1 in %, with its {{ confidence }} bootstrap CI over problems; seeds are averaged per
problem.</p>
{% else %}
<p class="note">No benchmark of this study has tests, so nothing below is measured by pass@1.</p>
{% endif %}
<table id="main-table">
  <tr><th>condition</th>{% for name in benchmarks %}<th>{{ name }}</th>{% endfor %}</tr>
  {% for condition, cells in main_rows %}
  <tr><th>{{ condition }}</th>
    {% for cell in cells %}
    {% if cell %}<td class="num">{{ cell[0] }}<span class="detail">{{ cell[1] }}</span></td>
    {% else %}<td>–</td>{% endif %}
    {% endfor %}</tr>
  {% endfor %}
</table>
{% if metrics.rows %}
<h3>Other metrics</h3>
<table id="metrics-table">
  <tr><th>condition</th>{% for header in metrics.headers %}<th>{{ header }}</th>{% endfor %}</tr>
  {% for row in metrics.rows %}
  <tr><th>{{ row[0] }}</th>{% for value in row[1:] %}<td class="num">{{ value }}</td>{% endfor %}</tr>
  {% endfor %}
</table>
{% endif %}

<h2>Paired comparisons against {{ reference }}</h2>
<p class="note">On the problems both conditions were scored on. Difference in percentage points with its paired
bootstrap CI; McNemar's exact test for 0/1 outcomes, else a paired sign-flip permutation test; Holm-adjusted
across the {{ n_comparisons }} comparisons in this report.</p>
{% if any_selected %}
<p class="note" id="selection-aware-note">A result chosen as the best of several candidates on the very problems it
is reported on looks better than it is (the winner's curse), so rows {{ selected_label }} are tested by a one-sided
sign-flip test of the best of all their candidates (checkpoints, or shot counts) against {{ reference }}, which
accounts for that choice, instead of a plain paired test.</p>
{% endif %}
{% for benchmark, rows in comparisons.items() %}
<h3>{{ benchmark }}</h3>
<table class="comparison-table">
  <tr><th>condition</th><th>n</th><th>{{ reference }} %</th><th>condition %</th><th>difference (pts) [{{ confidence }} CI]</th>
      <th>test</th><th>p</th><th>Holm p</th><th>effect size</th><th>reading</th></tr>
  {% for row in rows %}
  <tr{% if row.too_small %} class="too-small"{% endif %} title="{{ row.summary }}">
    <th>{{ row.condition }}</th><td class="num">{{ row.n }}</td><td class="num">{{ row.reference }}</td>
    <td class="num">{{ row.candidate }}</td><td class="num">{{ row.difference }}</td><td>{{ row.test }}</td>
    <td class="num">{{ row.p }}</td><td class="num">{{ row.holm_p }}</td><td>{{ row.effect }}</td>
    <td>{% if row.too_small %}<span class="badge warn">⚠ too small to tell</span> {% endif %}{{ row.reading }}</td>
  </tr>
  {% endfor %}
</table>
{% else %}
<p class="note">No comparisons: no other condition shares problems with {{ reference }}.</p>
{% endfor %}

<h2>Figures</h2>
{% for figure in figures %}
<figure>
  <h3>{{ figure.title }}</h3>
  <img alt="{{ figure.title }}" src="data:image/png;base64,{{ figure.png_base64 }}">
  <figcaption class="note">{{ figure.caption }}</figcaption>
</figure>
{% endfor %}

<h2>Problems the conditions disagree on</h2>
<p class="note">✓ every sample passed, ✗ none did, else passing samples / samples (summed over seeds).
Sorted by how many conditions solve the problem (sum of pass@1).</p>
{% for benchmark, table in disagreements.items() %}
<h3>{{ benchmark }}</h3>
{% if table.rows %}
<table class="disagreement-table">
  <tr>{% for header in table.headers %}<th>{{ header }}</th>{% endfor %}</tr>
  {% for row in table.rows %}
  <tr><td>{{ row[0] }}</td>{% for cell in row[1:] %}<td class="num">{{ cell }}</td>{% endfor %}</tr>
  {% endfor %}
</table>
{% else %}
<p class="note">The conditions agree on every problem.</p>
{% endif %}
{% endfor %}
</body>
</html>
"""


def render_report(study: Study, reference: str | None = None) -> str:
    """The report's HTML: tables, comparisons and figures of ``study``."""
    reference = choose_reference(study.conditions, reference)
    conditions = condition_order(study.conditions, reference)
    scores = problem_scores(study.problems)
    benchmarks = scores.groupby("benchmark")["task_id"].nunique().to_dict()
    summary = pass_rate_summary(scores, study.problems, study.runs)
    comparisons: dict[str, list[dict]] = {}
    selected = selected_on_reported(study.runs)
    all_comparisons = paired_comparisons(scores, study.problems, reference, conditions, selected)
    for comparison in all_comparisons:
        comparisons.setdefault(comparison.benchmark, []).append(comparison_row(comparison))
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(TEMPLATE).render(
        experiment=study.experiment, reference=reference, conditions=conditions, benchmarks=benchmarks,
        without_tests=sorted(set(final_runs(study.runs)["benchmark"]) - set(benchmarks)),
        confidence=f"{CONFIDENCE:.0%}",
        models=sorted(set(study.runs["model"]) - {""}),
        selection=selection_statements(study.runs, study.problems), selected_label=f"\u201c{SELECTED_LABEL}\u201d",
        any_selected=any(c.selected for c in all_comparisons),
        data_hash=recorded_values(study.runs, "data_content_hash"),
        isolation=recorded_values(study.runs, "sandbox_isolation"),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), skipped=study.skipped,
        main_rows=main_table(summary, conditions, list(benchmarks), selected),
        metrics=other_metrics_table(study.runs, conditions),
        comparisons=comparisons, n_comparisons=len(all_comparisons),
        figures=draw_figures(study, scores, summary, conditions) if not scores.empty else [],
        disagreements={benchmark: disagreement_table(group, conditions)
                       for benchmark, group in scores.groupby("benchmark")},
    )


# ----------------------------------------------------------------------------------------------
# Write and log
# ----------------------------------------------------------------------------------------------

def write_report(experiment: str, out_dir: str, *, tracking_uri: str | None = None,
                 reference: str | None = None) -> Path:
    """Writes ``out_dir/report.html`` for ``experiment`` and logs it to a ``run_kind=report`` run
    in the same experiment. ``tracking_uri`` defaults as in ``tune.tracking.tracking_uri``."""
    client = mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))
    study = load_study(client, experiment)
    reference = choose_reference(study.conditions, reference)
    path = Path(out_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(study, reference), encoding="utf-8")
    log_report(client, study, path, reference)
    return path


def log_report(client: mlflow.MlflowClient, study: Study, path: Path, reference: str) -> None:
    """A run tagged ``run_kind=report`` holding the report as its artifact (the next report's
    search for evaluation runs leaves it out)."""
    run = client.create_run(study.experiment_id, run_name="report", tags={"run_kind": "report"})
    run_id = run.info.run_id
    try:
        client.log_param(run_id, "reference", reference)
        client.log_param(run_id, "evaluation_runs", len(study.runs))
        client.log_artifact(run_id, str(path))
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="MLflow experiment (study) name")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    parser.add_argument("--out", help="output folder (default: outputs/reports/EXPERIMENT)")
    parser.add_argument("--reference", help='condition to compare against (default: "base", else the first)')
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # else one bar per run downloaded
    out_dir = args.out or str(DEFAULT_OUT_ROOT / args.experiment)
    # Imported here: the search report builds on this module's helpers.
    from ray_jobs.search_report import latest_search, write_search_report

    client = mlflow.MlflowClient(resolve_tracking_uri(args.tracking_uri))
    try:
        experiment_id = find_experiment_id(client, args.experiment)
        search = None if search_evaluation_runs(client, experiment_id) else latest_search(client, experiment_id)
        if search is not None:
            path = write_search_report(client, args.experiment, search, out_dir)
        else:
            path = write_report(args.experiment, out_dir, tracking_uri=args.tracking_uri, reference=args.reference)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
