from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ["cluster.yaml", "cluster-onprem.yaml"]


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_configs_are_valid_against_rays_schema(name):
    config = _load(name)
    validate_config(prepare_config(config))
    assert any("pip install -e ." in command for command in config["setup_commands"])
    assert any("mlflow server" in command for command in config["head_start_ray_commands"])


def test_cloud_config_has_lora_spot_and_full_fine_tuning_workers():
    node_types = _load("cluster.yaml")["available_node_types"]
    assert node_types["lora_gpu_spot"]["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert node_types["full_ft_gpu"]["node_config"]["InstanceType"].startswith("p4d")


@pytest.mark.parametrize("name", CONFIGS)
def test_schema_check_rejects_a_broken_config(name):
    config = _load(name)
    config["setup_commands"] = "not a list"
    with pytest.raises(Exception):
        validate_config(prepare_config(config))
