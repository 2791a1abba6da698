"""Runs a study spec (``tune.study_spec``) on the connected Ray cluster: for every model, seed and
condition, answers to every test benchmark, judged in the sandbox pool and logged to MLflow.

MLflow layout, one experiment per study (``ray_jobs.report`` reads it):

- one run per evaluation of a condition on a benchmark, tagged ``run_kind=evaluation``,
  ``condition``, ``benchmark``, ``model``, ``eval_key`` and, for an intermediate checkpoint,
  ``checkpoint_step``, for a candidate k of an ICL condition ``candidate_of``; params say what the
  condition was (shots, method, train_size, ...) and how it was obtained: the selection protocol
  (``selection_mode``, ``selection_benchmarks``, ``chosen_on``), the training data's
  ``data_content_hash`` and the ``sandbox_isolation``; a run on either part of a split benchmark
  also has ``split_part``, ``split_stratified_by`` and the artifact ``problem_split.json`` (the
  task ids of each part); metrics ``pass_at_<k>`` and the reference metrics; artifact
  ``per_problem.json``;
- one run per fine-tuning run, tagged ``run_kind=training``, with its per-step metrics.

A study resumes: an evaluation whose ``eval_key`` already has a finished run is not run again, and
a fine-tuning run continues from its latest checkpoint in ``storage_path``. A study whose finished
evaluations were chosen under another selection protocol is refused rather than mixed with them.
"""

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import ray.data
import ray.train
from transformers import AutoTokenizer

from data_pipeline.prepare import load_split
from data_pipeline.splits import nested_size_subsets
from data_pipeline.subsets import EqualSizeSubsets, equal_size_subsets
from data_pipeline.templates import PromptTemplate
from eval.pass_at_k import problem_table, summarize
from eval.prompting import answer_start, extract_code, few_shot_conversation, few_shot_prompt
from eval.ray_generate import generate_with_ray
from eval.ray_pool import SandboxPool
from eval.shots import ShotSelection, select_shots
from train.checkpoints import PER_PROBLEM
from train.config import TrainConfig
from train.trainer import build_trainer
from tune.config import BenchmarkConfig, StudyConfig
from tune.evaluation import PassAtOneEvaluator, benchmark_prompt
from tune.lora_search import run_search
from tune.reference_scores import reference_scores
from tune.study_spec import ConditionSpec, StudySpec
from tune.study_world import ModelWorld, prepare_world
from tune.training_data import TrainingData

EVALUATION, TRAINING = "evaluation", "training"
PROBLEM_SPLIT = "problem_split.json"


@dataclass(frozen=True)
class Answering:
    """How a condition gets answers: the model (and adapter), the shots per problem, the prompt style."""

    model_path: str
    adapter_path: str | None = None
    shots: ShotSelection | None = None  # None: zero-shot
    chain_of_thought: bool = False
    prompt_style: str = "instruct"


@dataclass(frozen=True, eq=False)  # hashed by identity: the params dict is not hashable
class Evaluation:
    """One condition on one benchmark, answered one way."""

    condition: str
    benchmark: str
    answering: Answering
    params: dict
    candidate_of: str | None = None  # the ICL condition that chooses among candidates like this one

    def generation_group(self) -> tuple:
        """Evaluations with the same group share one generation pipeline (one model load)."""
        return self.answering.model_path, self.answering.adapter_path, self.answering.chain_of_thought


@dataclass(frozen=True, eq=False)
class FinetuneRun:
    """One training run of a finetune condition: its config, training-set size and logged params."""

    condition: ConditionSpec
    name: str  # the condition, with the size when the condition sweeps sizes
    config: TrainConfig
    size: int | None
    params: dict
    profiles: dict = field(default_factory=dict)  # measured depth and diversity of deep/diverse subsets


@dataclass(frozen=True)
class TokenizedSplits:
    """A model's tokenized splits: the whole training split, still with its ``order`` (runs cut
    nested subsets from it), and the validation split as runs read it."""
    data: TrainingData
    train: ray.data.Dataset
    validation: ray.data.Dataset


@dataclass(frozen=True)
class TrainingOutcome:
    best_checkpoint: str
    history: list[dict]  # every report, in order
    checkpoints: list[tuple[ray.train.Checkpoint, dict]]  # those kept, with their metrics


@dataclass
class StudyRunner:
    spec: StudySpec
    pool: SandboxPool
    client: mlflow.MlflowClient
    experiment_id: str
    protocol: dict[str, str]  # how choices were made, as every evaluation run records it
    isolation: str  # what the sandbox pool's programs run under, a key of eval.jail.ISOLATION_LEVELS
    finished: dict[str, float] = field(default_factory=dict)  # eval_key -> pass@1 of finished runs
    tokenized_splits: dict[str, TokenizedSplits] = field(default_factory=dict)  # by model
    equal_size_cache: dict[tuple, EqualSizeSubsets] = field(default_factory=dict)  # by model, size, seed

    @classmethod
    def start(cls, spec: StudySpec, pool: SandboxPool, tracking_uri: str) -> "StudyRunner":
        mlflow.set_tracking_uri(tracking_uri)
        experiment_id = mlflow.set_experiment(spec.study).experiment_id
        runner = cls(spec, pool, mlflow.MlflowClient(tracking_uri), experiment_id, selection_protocol(spec),
                     pool.isolation)
        runs = finished_evaluation_runs(runner.client, experiment_id)
        check_same_protocol(runs, runner.protocol, spec.study)
        runner.finished = {run.data.tags["eval_key"]: run.data.metrics.get("pass_at_1", math.nan) for run in runs}
        return runner

    def run(self) -> dict[str, float]:
        """Every model x seed x condition; returns pass@1 by evaluation key."""
        for model in self.spec.models:
            world = prepare_world(self.spec, model)
            for seed in self.spec.seeds:
                self.run_prompting(world, seed)
                self.run_finetuning(world, seed)
        return self.finished

    # --- conditions -------------------------------------------------------------------------------

    def run_prompting(self, world: ModelWorld, seed: int) -> None:
        """The base and ICL conditions, in two rounds of batched generation: first the base model
        and every ICL candidate k on the selection benchmarks (one condition ``<name>-<k>shot`` per
        k), then each ICL condition's best k on the test benchmarks."""
        first_round, choices = [], {}
        for condition in self.spec.conditions:
            params = self.condition_protocol(condition)
            if condition.kind == "base":
                answering = Answering(world.model_path, prompt_style=condition.prompt_style)
                first_round += self.on_tests(condition.name, answering, {"method": "none", **params})
            elif condition.kind == "icl":
                candidates = icl_candidates(condition, world, seed)
                if len(candidates) > 1:
                    choices[condition.name] = {k: [Evaluation(f"{condition.name}-{k}shot", benchmark.name, answering,
                                                              icl_params(answering) | params,
                                                              candidate_of=condition.name)
                                                   for benchmark in self.spec.selection_benchmarks]
                                               for k, answering in candidates.items()}
                    first_round += [e for evaluations in choices[condition.name].values() for e in evaluations]
                else:
                    answering = next(iter(candidates.values()))
                    first_round += self.on_tests(condition.name, answering, icl_params(answering) | params)
        scores = self.evaluate_all(world, seed, first_round)
        second_round = []
        for name, by_k in choices.items():
            mean_pass = {k: sum(scores[e] for e in evaluations) / len(evaluations) for k, evaluations in by_k.items()}
            best = max(by_k, key=lambda k: (mean_pass[k], -k))  # ties: fewer shots
            chosen = by_k[best][0]
            second_round += self.on_tests(name, chosen.answering, chosen.params)
        self.evaluate_all(world, seed, second_round)

    def condition_protocol(self, condition: ConditionSpec) -> dict[str, str]:
        """The study's selection protocol, and where this condition chose (``nothing`` if it chooses nothing)."""
        chosen_on = self.protocol["selection_benchmarks"] if self.spec.condition_chooses(condition) else "nothing"
        return {**self.protocol, "chosen_on": chosen_on}

    def on_tests(self, condition: str, answering: Answering, params: dict) -> list[Evaluation]:
        return [Evaluation(condition, benchmark.name, answering, params) for benchmark in self.spec.test_benchmarks]

    def run_finetuning(self, world: ModelWorld, seed: int) -> None:
        """Every fine-tuning run of the finetune conditions (one per training-set size), one after
        the other; after each, its checkpoints' pass@1 (measured during training when checkpoints
        are selected by it) is logged as checkpoint evaluations and its best checkpoint is scored
        on every test benchmark."""
        for condition in self.spec.conditions:
            if condition.kind != "finetune":
                continue
            for run in self.finetune_runs(world, condition, seed):
                outcome = self.train(world, run, seed)
                self.log_training(world, run, seed, outcome)
                adapter, model_path = ((outcome.best_checkpoint, world.model_path) if run.params["method"] != "full"
                                       else (None, outcome.best_checkpoint))
                answering = Answering(model_path, adapter_path=adapter, prompt_style=condition.prompt_style)
                self.evaluate_all(world, seed, self.on_tests(run.name, answering, run.params))

    def finetune_runs(self, world: ModelWorld, condition: ConditionSpec, seed: int) -> list["FinetuneRun"]:
        """The condition's runs not yet scored on every test benchmark (a search, if configured, first)."""
        finetune = condition.finetune
        sizes = [None] if finetune.search is not None else finetune.train_sizes or [None]
        runs = []
        for size in sizes:
            name = condition.name if len(sizes) == 1 else f"{condition.name}-{size}"
            keys = [evaluation_key(world.name, name, benchmark.name, seed) for benchmark in self.spec.test_benchmarks]
            if all(key in self.finished for key in keys):
                continue
            config = self.spec.condition_train_config(condition, world.model_path).model_copy(update={"seed": seed})
            if finetune.search is not None:
                config, size = self.searched_config(world, condition, config, seed)
            params = run_params(config, size, finetune.data_variant) | self.condition_protocol(condition)
            runs.append(FinetuneRun(condition, name, config, size, params))
        return runs

    # --- training ---------------------------------------------------------------------------------

    def searched_config(self, world: ModelWorld, condition: ConditionSpec, config: TrainConfig,
                        seed: int) -> tuple[TrainConfig, int]:
        """A Ray Tune search (``tune.lora_search``) whose trials are chosen on the first selection
        benchmark and reported on the first test benchmark (held out, unless ``on_test``); returns
        the best trial's config, trained for ``final_max_steps``, and its size."""
        finetune = condition.finetune
        problems_dir = Path(self.spec.cache_dir).resolve() / "studies" / self.spec.study
        test = self.spec.test_benchmarks[0].name
        write_humaneval_problems(world.benchmarks[test], problems_dir / f"{test}.jsonl")
        selection = None  # on_test: the search chooses on the test problems themselves
        if self.spec.selection.mode == "held_out":
            selection = problems_dir / f"{self.spec.selection_benchmarks[0].name}.jsonl"
            write_humaneval_problems(world.benchmarks[self.spec.selection_benchmarks[0].name], selection)
        search_name = f"{world.name}-{condition.name}-search-seed{seed}"
        study = StudyConfig(
            experiment=self.spec.study, embedded=self.spec.embedded, data=world.data_config,
            benchmark=BenchmarkConfig(problems=str(problems_dir / f"{test}.jsonl"),
                                      validation_problems=selection and str(selection),
                                      selection=self.spec.selection.mode, prompt_style=condition.prompt_style,
                                      max_new_tokens=self.spec.generation.max_new_tokens,
                                      generation_batch_size=self.spec.generation.batch_size),
            sandbox=self.spec.sandbox, train=config, search=finetune.search.model_copy(update={"seed": seed}),
            storage_path=str(Path(self.spec.storage_path) / self.spec.study / search_name),
            cache_dir=self.spec.cache_dir, mlflow_tracking_uri=self.client.tracking_uri)
        outcome = run_search(study)
        if not outcome.trials:
            raise RuntimeError(f"the search of condition {condition.name!r} reported no trial")
        best = outcome.trials[0]
        lora = config.lora.model_copy(update={"rank": int(best["lora_rank"]), "alpha": float(best["lora_alpha"])})
        searched = config.model_copy(update={"lora": lora, "learning_rate": float(best["learning_rate"]),
                                             "max_steps": finetune.final_max_steps or config.max_steps})
        return searched, int(best["train_size"])

    def train(self, world: ModelWorld, run: "FinetuneRun", seed: int) -> "TrainingOutcome":
        """One Ray Train run, resumed from its latest checkpoint if an earlier invocation began it."""
        datasets, profiles = self.training_datasets(world, run.size, run.condition.finetune.data_variant, seed)
        run.profiles.update(profiles)
        # Checkpoints are scored by pass@1 only when they are selected by it (as the deep-vs-diverse
        # study did), on the first selection benchmark.
        evaluator = None
        if run.config.selection.metric == "pass_at_1":
            evaluator = PassAtOneEvaluator(world.benchmarks[self.checkpoint_benchmark], self.pool,
                                           run.condition.prompt_style, self.spec.generation.max_new_tokens,
                                           self.spec.generation.batch_size, PromptTemplate.from_config(world.data_config))
        name, started = f"{world.name}-{run.name}-seed{seed}", time.monotonic()
        result = build_trainer(run.config, datasets, name=name, evaluate=evaluator,
                               storage_path=str(Path(self.spec.storage_path).resolve() / self.spec.study)).fit()
        print(f"[study] trained {name} in {time.monotonic() - started:.0f} s", flush=True)
        best = result.get_best_checkpoint(run.config.selection.metric, run.config.selection.mode)
        history = [] if result.metrics_dataframe is None else result.metrics_dataframe.to_dict("records")
        return TrainingOutcome(best.path, history, list(result.best_checkpoints))

    @property
    def checkpoint_benchmark(self) -> str:
        return self.spec.selection_benchmarks[0].name

    def training_datasets(self, world: ModelWorld, size: int | None, variant: str,
                          seed: int) -> tuple[dict[str, ray.data.Dataset], dict]:
        """``train`` and ``validation`` of one run as it reads them (tokenized, packed with
        ``data.packing``), and for an equal-size variant every variant's profile (so a study can
        show its deep and diverse sets really differ). Both splits are tokenized once per model; a
        run's nested subset is cut from them."""
        if world.name not in self.tokenized_splits:
            data = TrainingData(world.model_path, world.data_config)
            self.tokenized_splits[world.name] = TokenizedSplits(data, *data.tokenized_splits(world.data))
        splits = self.tokenized_splits[world.name]
        if variant == "all":
            train = splits.train if size is None else nested_size_subsets(splits.train, [size])[size]
            return {"train": splits.data.finished(train), "validation": splits.validation}, {}
        key = (world.name, size, seed)  # deep, diverse and random subsets come from one clustering
        if key not in self.equal_size_cache:
            rows = load_split(world.data.train_path)
            self.equal_size_cache[key] = equal_size_subsets(rows, size or rows.count(), seed=seed)
        subsets = self.equal_size_cache[key]
        train = splits.data.finished(splits.data.tokenized(subsets.subsets[variant]))
        return {"train": train, "validation": splits.validation}, subsets.profiles

    def log_training(self, world: ModelWorld, run: "FinetuneRun", seed: int, outcome: "TrainingOutcome") -> None:
        tags = {"run_kind": TRAINING, "condition": run.name, "model": world.name}
        with mlflow.start_run(run_name=f"train {run.name} seed={seed}", tags=tags):
            mlflow.log_params(run.params | {"data_content_hash": world.data.content_hash})
            for report in outcome.history:
                numbers = {k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and k != "step"}
                mlflow.log_metrics(numbers, step=int(report["step"]))
            if run.profiles:
                mlflow.log_dict(run.profiles, "data_profiles.json")
        for checkpoint, metrics in outcome.checkpoints:
            self.log_checkpoint_evaluation(world, run, seed, checkpoint, metrics)

    def log_checkpoint_evaluation(self, world: ModelWorld, run: "FinetuneRun", seed: int,
                                  checkpoint: ray.train.Checkpoint, metrics: dict) -> None:
        if "pass_at_1" not in metrics:  # checkpoints chosen by validation loss were not scored on problems
            return
        step, benchmark = int(metrics["step"]), self.checkpoint_benchmark
        key = evaluation_key(world.name, run.name, benchmark, seed, step)
        if key in self.finished:
            return
        with checkpoint.as_directory() as directory:
            table = json.loads((Path(directory) / PER_PROBLEM).read_text())
        self.log_evaluation(key, world, run.name, benchmark, {**run.params, "seed": seed},
                            {"pass_at_1": metrics["pass_at_1"]}, table, tags={"checkpoint_step": str(step)})

    # --- evaluation -------------------------------------------------------------------------------

    def evaluate_all(self, world: ModelWorld, seed: int, evaluations: list[Evaluation]) -> dict[Evaluation, float]:
        """pass@1 of each evaluation: generate (one pipeline per model and adapter), judge in one
        pass over the sandbox pool, score and log each; finished ones are not run again."""
        keys = {evaluation: evaluation_key(world.name, evaluation.condition, evaluation.benchmark, seed)
                for evaluation in evaluations}
        todo = [evaluation for evaluation in evaluations if keys[evaluation] not in self.finished]
        if not todo:
            return {evaluation: self.finished[keys[evaluation]] for evaluation in evaluations}
        started = time.monotonic()
        answers = self.answers(world, seed, todo)
        jobs = {evaluation: [judged_answer(problem, answer, evaluation.answering.chain_of_thought)
                             for problem, answer in answers[evaluation]] for evaluation in todo}
        tested = [job for evaluation in todo for job in jobs[evaluation] if has_tests(job[0])]
        verdicts = iter(self.pool.check(tested, progress=False) if tested else [])
        for evaluation in todo:
            # The benchmark's own problem, not the sandbox's copy (whose prompt a whole program drops).
            judged = [(problem, completion, next(verdicts) if has_tests(problem) else None)
                      for (problem, _), (_, completion) in zip(answers[evaluation], jobs[evaluation])]
            self.score_and_log(world, keys[evaluation], evaluation, {**evaluation.params, "seed": seed}, judged)
        print(f"[study] {len(todo)} evaluations in {time.monotonic() - started:.0f} s", flush=True)
        return {evaluation: self.finished[keys[evaluation]] for evaluation in evaluations}

    def answers(self, world: ModelWorld, seed: int, evaluations: list[Evaluation]) -> dict[Evaluation, list]:
        """Each evaluation's (problem, answer) pairs, samples of a problem together."""
        groups: dict[tuple, list[Evaluation]] = {}
        for evaluation in evaluations:
            groups.setdefault(evaluation.generation_group(), []).append(evaluation)
        answers = {}
        for (model_path, adapter_path, chain_of_thought), members in groups.items():
            # Sampling seeds follow the prompt's id, so it names the evaluation, not its place in the group.
            prompts, owners = [], {}
            for evaluation in members:
                problems = world.benchmarks[evaluation.benchmark]
                for row in self.prompts(world, list(problems.values()), evaluation.answering):
                    prompt_id = f"{evaluation.condition}/{evaluation.benchmark}/{row['task_id']}"
                    owners[prompt_id] = (evaluation, problems[row["task_id"]])
                    prompts.append({"task_id": prompt_id, "prompt": row["prompt"]})
            settings = self.spec.generation.model_copy(update={"seed": seed, "stop_at_function_end": not chain_of_thought})
            for row in generate_with_ray(model_path, prompts, settings, adapter_path=adapter_path):
                evaluation, problem = owners[row["task_id"]]
                answers.setdefault(evaluation, []).append((problem, row["completion"]))
        return answers

    def score_and_log(self, world: ModelWorld, key: str, evaluation: Evaluation, params: dict,
                      judged: list[tuple[dict, str, object]]) -> None:
        """pass@k per problem (none for a benchmark without tests), the reference metrics, and one
        MLflow run."""
        ks = tuple(self.spec.metrics.pass_at_k)
        first = {}
        for problem, completion, _ in judged:
            first.setdefault(problem["task_id"], (problem, completion))
        if has_tests(judged[0][0]):
            table = problem_table([problem["task_id"] for problem, _, _ in judged], [v for _, _, v in judged], ks)
            metrics = summarize(table, ks)
        else:
            table, metrics = [{"task_id": task_id} for task_id in first], {}
        for row in table:
            problem, completion = first[row["task_id"]]
            row.update(difficulty=problem.get("difficulty"), completion=completion)
        artifacts = reference_scores(self.spec.metrics, [first[row["task_id"]][0] for row in table],
                                     [row["completion"] for row in table], table, metrics)
        tags = {"candidate_of": evaluation.candidate_of} if evaluation.candidate_of else {}
        self.log_evaluation(key, world, evaluation.condition, evaluation.benchmark, params, metrics, table, artifacts,
                            tags)
        print(f"[study] {key}: " + ", ".join(f"{name} {value:.3f}" for name, value in metrics.items()), flush=True)

    def prompts(self, world: ModelWorld, problems: list[dict], answering: Answering) -> list[dict]:
        zero_shot = answering.shots is None or answering.shots.k == 0
        if zero_shot and not answering.chain_of_thought:
            tokenizer = AutoTokenizer.from_pretrained(answering.model_path)
            template = PromptTemplate.from_config(world.data_config)
            return [{"task_id": p["task_id"], "prompt": benchmark_prompt(p, answering.prompt_style, template, tokenizer)}
                    for p in problems]
        shots = [[] for _ in problems] if zero_shot else select_shots(problems, world.shot_pool, answering.shots)
        if answering.prompt_style == "instruct" and world.data_config.template == "chat":
            return chat_prompts(problems, shots, answering)
        return [{"task_id": p["task_id"], "prompt": few_shot_prompt(p, s, style=answering.prompt_style,
                                                                    chain_of_thought=answering.chain_of_thought)}
                for p, s in zip(problems, shots)]

    def log_evaluation(self, key: str, world: ModelWorld, condition: str, benchmark: str, params: dict,
                       metrics: dict, table: list[dict], artifacts: dict | None = None,
                       tags: dict | None = None) -> None:
        """One evaluation run, with what it was obtained from: the training data's content hash,
        the sandbox's isolation and, on a part of a split benchmark, the split."""
        tags = {"run_kind": EVALUATION, "condition": condition, "benchmark": benchmark, "model": world.name,
                "eval_key": key, **(tags or {})}
        provenance = {"data_content_hash": world.data.content_hash, "sandbox_isolation": self.isolation}
        split_part = self.split_part(world, benchmark)
        if split_part is not None:
            artifacts = {**(artifacts or {}), PROBLEM_SPLIT: {"benchmark": self.spec.split_benchmark.name,
                                                              **world.problem_split.record()}}
            provenance |= {"split_part": split_part, "split_stratified_by": world.problem_split.stratified_by or "none"}
        with mlflow.start_run(run_name=key, tags=tags):
            mlflow.log_params(params | provenance)
            mlflow.log_metrics(metrics)
            mlflow.log_dict(table, "per_problem.json")
            for name, content in (artifacts or {}).items():
                mlflow.log_dict(content, name)
        self.finished[key] = metrics.get("pass_at_1", math.nan)

    def split_part(self, world: ModelWorld, benchmark: str) -> str | None:
        """``selection`` or ``held_out`` for a part of the split benchmark, else None."""
        if world.problem_split is None:
            return None
        parts = {self.spec.selection_benchmarks[0].name: "selection", self.spec.split_benchmark.name: "held_out"}
        return parts.get(benchmark)


def chat_prompts(problems: list[dict], shots: list[list[dict]], answering: Answering) -> list[dict]:
    """Few-shot or chain-of-thought prompts in the model's chat template (``data.template: chat``),
    one conversation turn per shot, as the model was trained or instruction-tuned to read them."""
    tokenizer = AutoTokenizer.from_pretrained(answering.model_path)
    conversations = [few_shot_conversation(p, s, chain_of_thought=answering.chain_of_thought)
                     for p, s in zip(problems, shots)]
    rendered = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
    return [{"task_id": p["task_id"], "prompt": text + answer_start(p, answering.chain_of_thought)}
            for p, text in zip(problems, rendered)]


def run_params(config: TrainConfig, size: int | None, data_variant: str) -> dict:
    """What the MLflow runs of one fine-tuning run record about it."""
    params = {"method": config.method, "learning_rate": config.learning_rate, "max_steps": config.max_steps,
              "seed": config.seed, "train_size": size or "all", "data_variant": data_variant}
    if config.method == "lora":
        params |= {"lora_rank": config.lora.rank, "lora_alpha": config.lora.alpha}
    return params


def icl_candidates(condition: ConditionSpec, world: ModelWorld, seed: int) -> dict[int, Answering]:
    icl = condition.icl
    return {k: Answering(world.model_path, chain_of_thought=icl.chain_of_thought, prompt_style=condition.prompt_style,
                         shots=ShotSelection(strategy=icl.selection, k=k, seed=seed,
                                             embedding_model=icl.embedding_model or world.model_path))
            for k in icl.shots}


def icl_params(answering: Answering) -> dict:
    return {"method": "icl", "shots": answering.shots.k, "shot_strategy": answering.shots.strategy,
            "chain_of_thought": answering.chain_of_thought}


def evaluation_key(model: str, condition: str, benchmark: str, seed: int, step: int | None = None) -> str:
    key = f"{model}/{condition}/{benchmark}/seed={seed}"
    return key if step is None else f"{key}/step={step}"


def selection_protocol(spec: StudySpec) -> dict[str, str]:
    """How the study chooses shots, search trials and checkpoints, as strings (MLflow params)."""
    protocol = {"selection_mode": spec.selection.mode,
                "selection_benchmarks": ",".join(b.name for b in spec.selection_benchmarks) or "none"}
    if spec.split_benchmark is not None:
        protocol |= {"split_of": spec.split_benchmark.name, "split_fraction": str(spec.selection.fraction),
                     "split_seed": str(spec.selection.seed)}
    return protocol


def finished_evaluation_runs(client: mlflow.MlflowClient, experiment_id: str) -> list:
    return client.search_runs([experiment_id], f"tags.run_kind = '{EVALUATION}' and attributes.status = 'FINISHED'",
                              max_results=50_000)


def check_same_protocol(runs: list, protocol: dict[str, str], study: str) -> None:
    """Refuses to resume a study whose finished evaluations were chosen another way (or before the
    protocol was recorded): their results would be mixed with this spec's."""
    for run in runs:
        recorded = {name: run.data.params.get(name) for name in protocol}
        if recorded != protocol:
            raise ValueError(f"study {study!r} has evaluations made under another selection protocol "
                             f"({run.data.tags.get('eval_key')}: {recorded}; this spec: {protocol}): "
                             "give the study another name, or delete its MLflow experiment and storage_path")


def has_tests(problem: dict) -> bool:
    return problem.get("kind", "function") != "reference"


def judged_answer(problem: dict, answer: str, chain_of_thought: bool) -> tuple[dict, str]:
    """The (problem, completion) the sandbox judges: a completion answer as it is, or the code of
    a chain-of-thought, stdin/stdout or reference-only answer (``eval.prompting.extract_code``)."""
    if not chain_of_thought and problem.get("kind", "function") == "function":
        return problem, answer
    return extract_code(answer, problem, language=problem.get("language", "python")).for_sandbox(problem)


def write_humaneval_problems(problems: dict[str, dict], path: Path) -> None:
    """Python function problems as HumanEval JSONL, what ``tune.lora_search`` scores on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for problem in problems.values():
            out.write(json.dumps({"task_id": problem["task_id"], "prompt": problem["prompt"],
                                  "canonical_solution": problem.get("canonical_solution") or "",
                                  "test": problem["test"], "entry_point": problem.get("entry_point") or ""}) + "\n")
