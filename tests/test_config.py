"""Configs: YAML in, flags on top, mistakes named with what is valid."""

import pytest

from gptnas.config import parse_config
from gptnas.errors import GptnasError
from gptnas.gpt.train import TrainConfig


def test_flags_override_the_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.01\nn_layer: 2\neval_families: [resnet, dla]\n")
    config = parse_config(TrainConfig, ["--config", str(path), "--n_layer", "3", "--push_to_hub", "--hub_model_id", "a/b"])
    assert (config.learning_rate, config.n_layer, config.push_to_hub) == (0.01, 3, True)
    assert config.eval_families == ["resnet", "dla"]


def test_unknown_key_lists_the_valid_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rat: 0.01\n")
    with pytest.raises(GptnasError, match=r"unknown config key 'learning_rat'; valid keys: .*learning_rate"):
        parse_config(TrainConfig, ["--config", str(path)])


@pytest.mark.parametrize(
    "text, message",
    [
        ("n_layer: two\n", "n_layer must be int"),
        ("n_layer: 0\n", "n_layer must be at least 1"),
        ("lr_scheduler_type: warmup\n", "unknown lr_scheduler_type 'warmup'; valid: linear"),
        ("use_lora: true\n", "use_lora needs a base model"),
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_bad_values_are_refused_before_any_work(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(GptnasError, match=message):
        parse_config(TrainConfig, ["--config", str(path)])


def test_missing_config_file():
    with pytest.raises(GptnasError, match="does not exist"):
        parse_config(TrainConfig, ["--config", "nope.yaml"])
