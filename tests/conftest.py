"""Fixtures shared across the test folders: a small embedded world and a tiny model built once."""

import shutil

import pytest
import ray

from data_pipeline.synthetic_tasks import write_embedded_world
from train.config import TinyLlamaConfig
from train.tiny_llama import ensure_tiny_llama

# Small enough to pretrain in seconds; the real default (tune/config.py) is larger.
TEST_MODEL = TinyLlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                             pretrain_steps=30, batch_size=8, seq_len=96)


@pytest.fixture(scope="session")
def embedded_world(tmp_path_factory) -> dict[str, str]:
    return write_embedded_world(str(tmp_path_factory.mktemp("world")), seed=0, eval_per_family=1,
                                n_instructions=400)


@pytest.fixture(scope="session")
def tiny_model_config() -> TinyLlamaConfig:
    return TEST_MODEL


@pytest.fixture(scope="session")
def tiny_model(embedded_world, tiny_model_config, tmp_path_factory) -> str:
    return ensure_tiny_llama(embedded_world["pretrain_corpus"], str(tmp_path_factory.mktemp("model")),
                             tiny_model_config)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance (2 CPUs, quiet) for every test that needs one."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def tiny_study(tmp_path, tiny_model, tiny_model_config) -> list[str]:
    """Overrides that shrink the default LoRA search to seconds, reusing the session's tiny model
    (copied where the study caches its base model, so it is not pretrained again)."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_model, cache / "embedded" / "model")
    model = [f"embedded.model.{key}={value}" for key, value in tiny_model_config.model_dump().items()]
    return [
        *model, "embedded.eval_per_family=1", "embedded.n_instructions=400",
        "search.num_samples=2", "search.space.train_size=[100]", "search.space.lora_rank=[2, 4]",
        "search.grace_period_steps=2", "train.max_steps=4", "train.eval_every_steps=2",
        "train.batch_size_per_worker=4", "data.max_seq_len=128", "benchmark.max_new_tokens=24",
        f"cache_dir={cache}", f"storage_path={tmp_path / 'ray_results'}",
        f"mlflow_tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
