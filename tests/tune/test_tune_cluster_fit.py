import pytest
import ray

from tune.cluster_fit import concurrent_trials
from tune.config import DEFAULT_CONFIG, ConfigError, load_config

# ray.cluster_resources() of a CPU head and two single-GPU worker nodes.
TWO_GPU_NODES = {"CPU": 4.0 + 2 * 8.0, "GPU": 2.0, "memory": 64e9}


@pytest.fixture
def cluster(monkeypatch):
    def use(resources: dict):
        monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    return use


def study(*overrides):
    return load_config(DEFAULT_CONFIG, list(overrides))


def test_four_trials_on_two_gpu_nodes_run_two_at_a_time(cluster):
    cluster(TWO_GPU_NODES)
    assert concurrent_trials(study("search.num_samples=4", "train.use_gpu=true", "train.num_workers=1",
                                   "train.cpus_per_worker=4")) == 2


def test_the_scarcest_resource_decides_and_the_sandbox_cpus_are_set_aside(cluster):
    cluster({**TWO_GPU_NODES, "GPU": 8.0})
    # 8 trials' single-GPU workers would fit, but 20 CPUs minus 8 for the sandbox hold only 3 x 4.
    assert concurrent_trials(study("search.num_samples=8", "train.use_gpu=true", "train.num_workers=1",
                                   "train.cpus_per_worker=4", "train.custom_resources_per_worker={}",
                                   "sandbox.workers=8", "sandbox.cpus_per_worker=1")) == 3
    assert concurrent_trials(study("search.num_samples=8", "train.use_gpu=true", "train.num_workers=2",
                                   "train.cpus_per_worker=1")) == 4


def test_custom_resources_count_and_never_more_trials_than_samples(cluster):
    cluster({"CPU": 6.0, "trainer": 3.0})
    overrides = ["train.num_workers=1", "train.cpus_per_worker=1", "train.custom_resources_per_worker={trainer: 1}"]
    assert concurrent_trials(study("search.num_samples=8", *overrides)) == 3
    assert concurrent_trials(study("search.num_samples=2", *overrides)) == 2


def test_a_cluster_too_small_for_one_trial_still_runs_one_and_a_number_is_kept(cluster):
    cluster({"CPU": 2.0})
    assert concurrent_trials(study("train.num_workers=4")) == 1
    cluster(TWO_GPU_NODES)
    assert concurrent_trials(study("search.max_concurrent_trials=3")) == 3


def test_bad_setting_names_the_key_and_auto():
    with pytest.raises(ConfigError) as error:
        study("search.max_concurrent_trials=all")
    assert "search.max_concurrent_trials" in str(error.value) and "'auto'" in str(error.value)
