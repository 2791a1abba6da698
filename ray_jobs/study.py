"""Run a whole study from its spec, then write its comparison report.

    python -m ray_jobs.study configs/studies/icl_vs_lora_embedded.yaml [key=value ...]
    ray job submit --working-dir . -- python -m ray_jobs.study configs/studies/icl_vs_lora.yaml

Every model x seed x condition is evaluated on the spec's test benchmarks and logged to MLflow under
the experiment named by ``study``; rerunning the same command resumes where it stopped. Shots,
search trials and checkpoints are chosen on other problems than those reported (the spec's
``selection``), unless it says ``selection.mode: on_test``. The report (``ray_jobs.report``) goes
to ``outputs/reports/<study>/report.html`` and to MLflow.
"""

import argparse
import sys

import ray

from eval.jail import JailSettings
from eval.ray_pool import SandboxPool
from eval.sandbox import SandboxLimits
from ray_jobs.report import write_report
from tune.lora_search import SearchInterrupted
from tune.study_runner import StudyRunner
from tune.study_spec import load_study_spec
from tune.tracking import tracking_uri


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="a study spec, e.g. configs/studies/icl_vs_lora_embedded.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. seeds=[0,1] generation.max_new_tokens=64")
    parser.add_argument("--reference", help="the condition the report compares every other one with "
                                            "(default: the spec's first base condition)")
    parser.add_argument("--no-report", action="store_true", help="run the evaluations only")
    args = parser.parse_args(argv)
    spec = load_study_spec(args.spec, args.overrides)

    ray.init(ignore_reinit_error=True, log_to_driver=False)
    uri = tracking_uri(spec.mlflow_tracking_uri)
    pool = SandboxPool(spec.sandbox.workers, SandboxLimits(timeout_s=spec.sandbox.timeout_s),
                       num_cpus_per_worker=spec.sandbox.cpus_per_worker,
                       settings=JailSettings(isolation=spec.sandbox.isolation))
    runner = StudyRunner.start(spec, pool, uri)
    try:
        scores = runner.run()
    except (KeyboardInterrupt, SearchInterrupted):
        print(f"The study was interrupted: {len(runner.finished)} evaluation(s) finished and are kept in MLflow, "
              "and no report was written. Run the same command again to resume (finished evaluations are not "
              "run again, a training run continues from its latest checkpoint).", file=sys.stderr)
        sys.exit(130)  # the shell's code for a run stopped by Ctrl-C
    for key, pass_at_1 in sorted(scores.items()):
        print(f"{key:<70} pass@1 {pass_at_1:.3f}")
    if not args.no_report:
        reference = args.reference or next((c.name for c in spec.conditions if c.kind == "base"), None)
        path = write_report(spec.study, f"outputs/reports/{spec.study}", tracking_uri=uri, reference=reference)
        print(f"report: {path}")
    return scores


if __name__ == "__main__":
    main(sys.argv[1:])
