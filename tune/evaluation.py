"""pass@1 of a model on a benchmark: generation (``eval.generate``) then judging in the sandbox pool.

``PassAtOneEvaluator`` is the callable tune hands to the training loop (``evaluate`` in
``train.finetune``), and the same object scores the base model before any training.
"""

from eval.generate import generate_completions
from eval.pass_at_k import problem_table, summarize
from eval.ray_pool import SandboxPool
from data_pipeline.templates import PromptTemplate
from data_pipeline.synthetic_tasks import COMPLETION_INSTRUCTION


def benchmark_prompt(problem: dict, style: str, template: PromptTemplate, tokenizer) -> str:
    """``instruct``: the completion instruction in the training template, the answer begun by the
    code prompt; ``completion``: the bare code prompt, for base models."""
    if style == "completion":
        return problem["prompt"]
    return template.prompts([COMPLETION_INSTRUCTION], [""], tokenizer)[0] + problem["prompt"]


class PassAtOneEvaluator:
    """Picklable: holds the problems, generation settings and a :class:`SandboxPool`."""

    def __init__(self, problems: dict[str, dict], pool: SandboxPool, prompt_style: str = "instruct",
                 max_new_tokens: int = 64, batch_size: int = 32, template: PromptTemplate = PromptTemplate()):
        self.problems = list(problems.values())
        self.pool = pool
        self.prompt_style = prompt_style
        self.template = template
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def __call__(self, model, tokenizer) -> tuple[dict[str, float], list[dict]]:
        prompts = [benchmark_prompt(problem, self.prompt_style, self.template, tokenizer) for problem in self.problems]
        completions = generate_completions(model, tokenizer, prompts, self.max_new_tokens, self.batch_size)
        verdicts = self.pool.check(list(zip(self.problems, completions)), progress=False)
        table = problem_table([problem["task_id"] for problem in self.problems], verdicts)
        for row, completion, verdict in zip(table, completions, verdicts):
            row.update(completion=completion, result=verdict.result)
        return summarize(table), table
