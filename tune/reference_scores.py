"""The study's reference metrics for one evaluation: BLEU, CodeBLEU, CodeBERTScore and the LLM
judge, each comparing a problem's first answer with the benchmark's canonical solution.

Problems without a canonical solution are left out of these metrics (pass@k still counts them).
"""

from eval.judge import judge_completions, judge_score
from eval.reference_metrics import bleu, codebertscore, codebleu, sentence_bleu
from tune.study_spec import MetricsSpec


def reference_scores(spec: MetricsSpec, problems: list[dict], completions: list[str], table: list[dict],
                     metrics: dict[str, float]) -> dict[str, list]:
    """Adds per-problem scores to ``table`` rows and their means to ``metrics``; returns the
    artifacts to store with the run (the judge's prompts and raw answers)."""
    scored = [i for i, problem in enumerate(problems) if problem.get("canonical_solution")]
    if not scored or not (spec.bleu or spec.codebleu or spec.codebertscore_model or spec.judge):
        return {}
    candidates = [completions[i] for i in scored]
    references = [problems[i]["canonical_solution"] for i in scored]
    if spec.bleu:
        metrics["bleu"] = bleu(candidates, references)
        for i, candidate, reference in zip(scored, candidates, references):
            table[i]["bleu"] = sentence_bleu(candidate, reference)
    if spec.codebleu:
        language = problems[scored[0]].get("language", "python")
        metrics["codebleu"] = codebleu(candidates, references, language)["codebleu"]
    if spec.codebertscore_model:
        scores = codebertscore(candidates, references, spec.codebertscore_model)
        for i, score in zip(scored, scores):
            table[i]["codebertscore_f1"] = score["f1"]
        metrics["codebertscore_f1"] = sum(score["f1"] for score in scores) / len(scores)
    if spec.judge is None:
        return {}
    items = [{"task_id": problems[i]["task_id"], "prompt": problems[i]["prompt"], "reference": reference}
             for i, reference in zip(scored, references)]
    records = judge_completions(items, candidates, spec.judge)
    for i, record in zip(scored, records):
        table[i]["judge_verdict"] = record["verdict"]
    summary = judge_score(records)
    metrics["judge_unparsed"] = summary["unparsed"]
    if "judge_score" in summary:  # absent when no answer could be parsed
        metrics["judge_score"] = summary["judge_score"]
    return {"judge_records.json": records}
