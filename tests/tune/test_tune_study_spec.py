import pytest

from tune.config import ConfigError
from tune.study_spec import STUDIES_DIR, load_study_spec

EMBEDDED = sorted(STUDIES_DIR.glob("*_embedded.yaml"))
CLUSTER = sorted(set(STUDIES_DIR.glob("*.yaml")) - set(EMBEDDED))


def test_every_reference_study_ships_in_an_embedded_and_a_cluster_version():
    assert [path.name.removesuffix("_embedded.yaml") for path in EMBEDDED] == \
        [path.name.removesuffix(".yaml") for path in CLUSTER]
    assert len(EMBEDDED) == 4


@pytest.mark.parametrize("path", EMBEDDED, ids=lambda path: path.stem)
def test_embedded_specs_need_no_download(path):
    spec = load_study_spec(path)
    assert spec.embedded is not None
    assert all(model.path is None for model in spec.models)
    assert all(benchmark.path is None for benchmark in spec.benchmarks)


@pytest.mark.parametrize("path", CLUSTER, ids=lambda path: path.stem)
def test_cluster_specs_name_real_models_and_train_on_gpus(path):
    spec = load_study_spec(path)
    assert spec.embedded is None
    assert all("/" in model.path for model in spec.models)  # Hugging Face ids
    assert spec.train.use_gpu


def test_embedded_specs_that_choose_by_pass_at_1_report_on_held_out_problems():
    splits = {path.stem: load_study_spec(path).split_benchmark for path in EMBEDDED}
    assert {name: split and split.name for name, split in splits.items()} == {
        "dataset_size_embedded": None, "deep_vs_diverse_embedded": "test", "icl_vs_lora_embedded": "test",
        "methods_embedded": None}  # the other two choose nothing by pass@1


def test_the_icl_vs_lora_design_selects_shots_on_a_validation_benchmark_then_searches_lora():
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora.yaml")
    icl = next(condition for condition in spec.conditions if condition.kind == "icl")
    lora = next(condition for condition in spec.conditions if condition.kind == "finetune")
    assert icl.icl.shots == [0, 1, 3, 5] and [b.name for b in spec.validation_benchmarks] == ["mbpp"]
    assert lora.finetune.search is not None and lora.finetune.final_max_steps == 1500
    assert {b.name for b in spec.test_benchmarks} >= {"humaneval", "humaneval_plus", "multipl_e_cpp"}


def test_condition_train_overrides_merge_into_the_study_train_section():
    spec = load_study_spec(STUDIES_DIR / "methods_embedded.yaml")
    full = next(condition for condition in spec.conditions if condition.name == "full")
    config = spec.condition_train_config(full, "some/model")
    assert (config.method, config.learning_rate, config.max_steps) == ("full", 0.0003, spec.train.max_steps)
    assert config.model == "some/model"


@pytest.mark.parametrize("override, message", [
    ("conditions=[{name: x, kind: prompting}]", "conditions.0.kind"),
    ("conditions=[{name: x, kind: finetune, finetune: {train: {method: qlora}}}]", "method"),
    ("conditions=[{name: x, kind: base, icl: {shots: [1]}}]", "remove its 'icl' section"),
    ("benchmarks=[{name: b, problems: 'first ten'}]", "slice such as '0:20'"),
    ("benchmarks=[{name: b, role: validation}]", "role: test"),
    ("selection.mode=best", "selection.mode: Input should be 'held_out' or 'on_test'"),
    ("selection.fraction=1", "selection.fraction"),
    ("benchmarks=[{name: b}, {name: b-selection}]", "'b-selection' is the name of the selection part of 'b'"),
    ("embedded=null", "models[tiny-llama].path"),
    ("generation.temperature=-1", "generation.temperature"),
])
def test_bad_specs_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match="invalid study spec") as error:
        load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml", [override])
    assert message in str(error.value)


def test_by_default_choices_are_made_on_a_split_of_the_first_test_benchmark_when_there_is_no_validation_one():
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml",
                           ["benchmarks=[{name: he}, {name: other}]", "selection.fraction=0.3", "selection.seed=7"])
    assert spec.selection.mode == "held_out" and spec.split_benchmark.name == "he"
    [selection] = spec.selection_benchmarks
    assert (selection.name, selection.role) == ("he-selection", "validation")
    assert [b.name for b in spec.test_benchmarks] == ["he", "other"]  # he reports on its held-out part


def test_a_validation_benchmark_chooses_and_no_test_benchmark_is_split():
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml",
                           ["benchmarks=[{name: v, role: validation}, {name: he}]"])
    assert spec.split_benchmark is None and [b.name for b in spec.selection_benchmarks] == ["v"]


def test_a_study_that_chooses_nothing_by_pass_at_1_reports_on_every_problem():
    spec = load_study_spec(STUDIES_DIR / "methods_embedded.yaml")
    assert not spec.chooses_by_pass_at_1
    assert spec.split_benchmark is None and spec.selection_benchmarks == []


def test_choosing_on_the_reported_problems_must_be_asked_for():
    spec = load_study_spec(STUDIES_DIR / "deep_vs_diverse_embedded.yaml", ["selection={mode: on_test}"])
    assert spec.split_benchmark is None and [b.name for b in spec.selection_benchmarks] == ["test"]
    for path in EMBEDDED:
        assert load_study_spec(path).selection.mode == "held_out"
    with pytest.raises(ConfigError, match="on_test chooses on the first test benchmark, yet benchmarks"):
        load_study_spec(STUDIES_DIR / "deep_vs_diverse_embedded.yaml",
                        ["selection={mode: on_test}", "benchmarks=[{name: v, role: validation}, {name: t}]"])


REFERENCE_ONLY = "{name: held, format: reference_jsonl, path: held.jsonl}"


def test_a_benchmark_without_tests_is_scored_by_a_reference_metric_and_chooses_nothing():
    base = ["conditions=[{name: base, kind: base}, {name: lora, kind: finetune}]", "metrics.bleu=true"]
    spec = load_study_spec(STUDIES_DIR / "dataset_size_embedded.yaml", [*base, f"benchmarks=[{REFERENCE_ONLY}]"])
    assert [b.format for b in spec.test_benchmarks] == ["reference_jsonl"]

    with pytest.raises(ConfigError, match=r"set a reference metric \(metrics.bleu"):
        load_study_spec(STUDIES_DIR / "dataset_size_embedded.yaml",
                        [*base, "metrics.bleu=false", f"benchmarks=[{REFERENCE_ONLY}]"])
    # Checkpoints chosen by pass@1 need a benchmark with tests to choose on.
    with pytest.raises(ConfigError, match=r"'held' \(reference_jsonl\) has no tests"):
        load_study_spec(STUDIES_DIR / "dataset_size_embedded.yaml",
                        [*base, "train.selection.metric=pass_at_1", f"benchmarks=[{REFERENCE_ONLY}, {{name: he}}]"])
    chosen_on_tests = load_study_spec(STUDIES_DIR / "dataset_size_embedded.yaml",
                                      [*base, "train.selection.metric=pass_at_1",
                                       f"benchmarks=[{{name: he}}, {REFERENCE_ONLY}]"])
    assert [b.name for b in chosen_on_tests.test_benchmarks] == ["he", "held"]


def test_unknown_condition_kind_lists_the_allowed_kinds():
    with pytest.raises(ConfigError) as error:
        load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml", ["conditions=[{name: x, kind: prompting}]"])
    assert "'base', 'icl' or 'finetune'" in str(error.value)
