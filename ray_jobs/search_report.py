"""One LoRA search (``tune/lora_search.py``) as a self-contained HTML report.

``python -m ray_jobs.report EXPERIMENT`` writes this report when the experiment holds a search
rather than a study: the trials with their hyperparameters and best selection scores, each
trial's curves of pass@1 on the selection problems and validation loss, and the final
comparison of the chosen checkpoint with the base model on the held-out problems, as the search
logged it to its parent run (``tune.held_out_comparison``). The report is also logged to that run.
"""

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import mlflow
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from ray_jobs.report import REPORT_FILE, png_base64

HYPERPARAMETERS = ("lora_rank", "lora_alpha", "learning_rate", "train_size")
# The held-out comparison's metrics on the parent run, as labelled in the report.
COMPARISON_ROWS = (("base model pass@1", "test_base_pass_at_1"), ("chosen checkpoint pass@1", "test_best_pass_at_1"),
                   ("difference", "test_difference"))


@dataclass(frozen=True)
class Search:
    experiment: str
    parent: Run
    base: Run | None
    trials: list[Run]
    curves: dict[str, dict[str, list[tuple[int, float]]]]  # trial run id -> metric -> (step, value)
    split: dict | None


def latest_search(client: mlflow.MlflowClient, experiment_id: str) -> Run | None:
    """The parent run of the experiment's latest LoRA search (it records its selection protocol;
    a study's runs have no ``selection`` param), or None."""
    runs = client.search_runs([experiment_id], "params.selection != ''", order_by=["attributes.start_time DESC"])
    return next((run for run in runs if "mlflow.parentRunId" not in run.data.tags), None)


def load_search(client: mlflow.MlflowClient, experiment: str, parent: Run) -> Search:
    """The search whose parent run is ``parent``, with its base-model and trial runs."""
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    base = next((run for run in children if run.data.tags.get("condition") == "base"), None)
    trials = sorted((run for run in children if run.data.tags.get("condition") == "lora"),
                    key=lambda run: run.data.tags.get("trial_name", run.info.run_name))
    curves = {run.info.run_id: {metric: [(point.step, point.value)
                                         for point in client.get_metric_history(run.info.run_id, metric)]
                                for metric in ("pass_at_1", "validation_loss")} for run in trials}
    return Search(experiment, parent, base, trials, curves, problem_split(client, parent.info.run_id))


def problem_split(client: mlflow.MlflowClient, run_id: str) -> dict | None:
    with tempfile.TemporaryDirectory() as directory:
        try:
            return json.loads(Path(client.download_artifacts(run_id, "problem_split.json", directory)).read_text())
        except (OSError, MlflowException):
            return None


def trial_rows(search: Search) -> list[dict]:
    """Each trial: hyperparameters, best selection pass@1 (earliest step of equals), last validation loss."""
    rows = []
    for run in search.trials:
        curves = search.curves[run.info.run_id]
        passes = curves["pass_at_1"]
        best_step, best = max(passes, key=lambda point: (point[1], -point[0])) if passes else (None, None)
        losses = curves["validation_loss"]
        rows.append({"trial": run.data.tags.get("trial_name", run.info.run_name), "status": run.info.status,
                     **{name: run.data.params.get(name, "") for name in HYPERPARAMETERS},
                     "best_pass_at_1": best, "best_step": best_step,
                     "last_step": losses[-1][0] if losses else None,
                     "last_validation_loss": losses[-1][1] if losses else None})
    return sorted(rows, key=lambda row: -1 if row["best_pass_at_1"] is None else row["best_pass_at_1"], reverse=True)


def curves_figure(search: Search) -> Figure | None:
    """Per trial: pass@1 on the selection problems and validation loss against the step."""
    if not search.trials:
        return None
    figure = Figure(figsize=(11, 4), layout="constrained")
    passes, losses = figure.subplots(1, 2)
    for run in search.trials:
        label = run.data.tags.get("trial_name", run.info.run_name)
        for axes, metric in ((passes, "pass_at_1"), (losses, "validation_loss")):
            points = search.curves[run.info.run_id][metric]
            axes.plot([step for step, _ in points], [value for _, value in points], marker="o", label=label)
    base = search.base.data.metrics.get("pass_at_1") if search.base else None
    if base is not None:
        passes.axhline(base, color="grey", linestyle="--", label="base model")
    passes.set(title="pass@1 on the selection problems", xlabel="step", ylabel="pass@1")
    losses.set(title="validation loss", xlabel="step", ylabel="loss")
    passes.legend(fontsize="small")
    return figure


def comparison_rows(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """The held-out comparison's figures as (label, text); none if the search did not finish."""
    if "test_difference" not in metrics:
        return []
    rows = [(label, f"{metrics[name]:.3f} [{metrics[name + '_ci_low']:.3f}, {metrics[name + '_ci_high']:.3f}]")
            for label, name in COMPARISON_ROWS]
    return rows + [("p-value", f"{metrics['test_p_value']:.3g}"),
                   ("smallest detectable difference", f"{metrics['test_minimum_detectable_difference']:.3f}")]


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{{ experiment }} · search report</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
  table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
  th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
  th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .note { color: #666; } figure img { max-width: 100%; }
</style></head>
<body>
<h1>LoRA search report: {{ experiment }}</h1>
<ul>
  <li>Model: {{ params.get("model", "?") }}; status: {{ status }}</li>
  <li id="selection">Selection: {{ selection }}</li>
  <li>Training data content hash: {{ params.get("data_content_hash", "not logged") }}</li>
  <li>Generated {{ generated }}</li>
</ul>
<h2>Held-out comparison</h2>
{% if comparison %}
<p>{{ chosen }} against the base model on {{ test_problems }} held-out problems: <strong id="verdict">{{ verdict }}</strong>.</p>
<table id="comparison-table">
  {% for label, value in comparison %}<tr><th>{{ label }}</th><td class="num">{{ value }}</td></tr>{% endfor %}
</table>
{% else %}
<p class="note" id="no-comparison">No held-out comparison was logged: the search did not finish (status {{ status }}).</p>
{% endif %}
<h2>Trials</h2>
<p class="note">Best pass@1 on the selection problems (the earliest step of equal scores), and the last validation loss.</p>
<table id="trials-table">
  <tr><th>trial</th><th>status</th>{% for name in hyperparameters %}<th>{{ name }}</th>{% endfor %}
      <th>best pass@1</th><th>at step</th><th>last validation loss</th></tr>
  {% for row in trials %}
  <tr><th>{{ row.trial }}</th><td>{{ row.status }}</td>
    {% for name in hyperparameters %}<td class="num">{{ row[name] }}</td>{% endfor %}
    <td class="num">{{ "%.3f" | format(row.best_pass_at_1) if row.best_pass_at_1 is not none else "–" }}</td>
    <td class="num">{{ row.best_step if row.best_step is not none else "–" }}</td>
    <td class="num">{{ "%.4f" | format(row.last_validation_loss) if row.last_validation_loss is not none else "–" }}
      {% if row.last_step is not none %}(step {{ row.last_step }}){% endif %}</td></tr>
  {% endfor %}
</table>
{% if figure %}<figure><img alt="trial curves" src="data:image/png;base64,{{ figure }}">
<figcaption class="note">Each trial's curves; the dashed line is the base model on the selection problems.</figcaption></figure>{% endif %}
</body></html>
"""


def selection_text(params: dict, split: dict | None) -> str:
    if params.get("selection") == "on_test":
        return ("on the reported problems themselves (selection: on_test); the p-value accounts for the choice "
                "among every evaluated checkpoint")
    text = f"trials, ASHA and checkpoints chosen on {params.get('selection_problems', '?')} selection problems"
    if split and "selection_seed" in split:
        stratum = f", stratified by {split['stratified_by']}" if split.get("stratified_by") else ""
        text += f" (a seeded split, seed {split['selection_seed']}, fraction {split['selection_fraction']}{stratum})"
    elif split and split.get("validation_problems"):
        text += f" from {split['validation_problems']}"
    return text + f"; results reported on {params.get('test_problems', '?')} held-out problems"


def render_search_report(search: Search) -> str:
    params, metrics, tags = search.parent.data.params, search.parent.data.metrics, search.parent.data.tags
    figure = curves_figure(search)
    return jinja2.Environment(autoescape=True).from_string(TEMPLATE).render(
        experiment=search.experiment, params=params, status=search.parent.info.status,
        selection=selection_text(params, search.split), generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        comparison=comparison_rows(metrics), chosen=tags.get("chosen_checkpoint", "the chosen checkpoint"),
        verdict=tags.get("verdict", ""), test_problems=int(metrics.get("test_problems", 0)),
        trials=trial_rows(search), hyperparameters=HYPERPARAMETERS, figure=png_base64(figure) if figure else None)


def write_search_report(client: mlflow.MlflowClient, experiment: str, parent: Run, out_dir: str) -> Path:
    """Writes ``out_dir/report.html`` for the search whose parent run is ``parent``, and logs it there."""
    search = load_search(client, experiment, parent)
    path = Path(out_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_search_report(search), encoding="utf-8")
    client.log_artifact(search.parent.info.run_id, str(path))
    return path
