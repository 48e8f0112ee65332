"""The CPU path: profiles, a schedule that fits small data, --fidelity, and the digits example at CI size."""

import csv
import json

import pytest
import torch
import yaml

import evolve
from gptnas.evaluators import get_evaluator
from gptnas.evaluators.train import TrainSettings, schedule, validation_share
from gptnas.search.config import CPU_FLOPS_PER_PIXEL, EvolveConfig
from gptnas.training.loop import steps_per_epoch


def resolved(**flags) -> dict:
    """Every setting of the config `flags` resolve to, flat."""
    return EvolveConfig.from_flags(flags).flat()


def pick(settings: dict, *names) -> tuple:
    return tuple(settings[name] for name in names)


def test_a_training_search_on_a_cpu_takes_the_cpu_profile_and_tables_keep_the_papers():
    cpu = resolved(space="cifar", dataset="digits", device="cpu")
    assert pick(cpu, "profile", "population", "generations", "batch_size", "lr", "min_steps") == \
        ("cpu", 8, 3, 64, 0.05, 300)
    table = resolved(space="nas-bench-201", device="cpu")
    assert pick(table, "profile", "population", "generations") == ("gpt-nas", 30, 20)
    gpu = resolved(space="cifar", dataset="cifar10", device="cuda")
    assert pick(gpu, "profile", "population", "epochs", "batch_size", "lr") == ("gpt-nas", 30, 6, 512, 0.01)
    given = resolved(space="cifar", dataset="digits", device="cpu", population=4, lr=0.1)
    assert pick(given, "population", "lr", "generations") == (4, 0.1, 3)  # what is given wins


def test_fidelity_scales_the_profiles_schedule_but_not_what_is_given():
    low = resolved(space="cifar", dataset="digits", device="cpu", fidelity="low")
    assert pick(low, "epochs", "min_steps", "train_fraction", "image_scale") == (2, 75, 0.25, 0.5)
    medium = resolved(space="cifar", dataset="digits", device="cpu", fidelity="medium", epochs=5)
    assert pick(medium, "epochs", "min_steps", "train_fraction") == (5, 150, 0.5)


def test_the_schedule_gives_small_data_enough_steps_and_leaves_cifar_alone():
    assert schedule(45_000, TrainSettings()) == (512, 6)  # CIFAR-10's training split: GPT-NAS as published
    batch, epochs = schedule(1_007, TrainSettings())  # digits: batch 512 would be 2 steps an epoch
    assert batch == 100 and epochs * steps_per_epoch(1_007, batch) >= 300
    assert schedule(1_007, TrainSettings(batch_size=64, min_steps=300)) == (64, 19)


def test_a_small_dataset_gets_a_validation_split_that_can_rank():
    assert validation_share(50_000, 0.1) == 0.1  # CIFAR: 5,000 images already
    assert validation_share(3_000, 0.1) == pytest.approx(500 / 3_000)  # 500, not 300
    assert validation_share(1_438, 0.1) == 0.3  # digits: 431, not 144; never more than 30 %
    splits = get_evaluator("train", "cifar", "digits", device="cpu").splits(torch.device("cpu"))
    assert (len(splits.train_labels), len(splits.val_labels)) == (1_007, 431)


def test_fidelity_trains_on_fewer_and_smaller_images():
    high = get_evaluator("train", "cifar", "digits", device="cpu", image_size=16)
    low = get_evaluator("train", "cifar", "digits", device="cpu", image_scale=0.5, train_fraction=0.25)
    assert high.input_size == 16 and low.input_size == 8  # digits are 8 pixels a side: the floor
    cpu = torch.device("cpu")
    assert len(low.splits(cpu).train_labels) == round(len(high.splits(cpu).train_labels) * 0.25)
    assert get_evaluator("train", "cifar", "digits", image_scale=0.5).input_size == 8  # never below 8 pixels


@pytest.mark.parametrize("flag, value, message", [
    ("--profile", "laptop", "argument --profile: invalid choice: 'laptop' (choose from 'gpt-nas', 'cpu')"),
    ("--fidelity", "max", "argument --fidelity: invalid choice: 'max' (choose from 'high', 'medium', 'low')"),
    ("--train_fraction", "1.5", "train_fraction must lie in (0, 1]"),
])
def test_bad_profile_or_fidelity_is_one_line(flag, value, message, capsys, tmp_path):
    assert evolve.main(["--space", "cifar", "--dataset", "digits", flag, value, "--output_dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_the_digits_example_at_ci_size_finds_a_good_network_within_the_derived_cap(tmp_path):
    """`python evolve.py --space cifar --dataset digits`, the README's CPU example, with a smaller search: the
    same code path (gpt-ga with the shipped GPT rewriting the initial population, the cpu profile, its FLOPs
    cap from the 8x8 images). The generations after it are other tests' (tests/test_evolve.py)."""
    out = tmp_path / "digits"
    assert evolve.main(["--space", "cifar", "--dataset", "digits", "--population", "2", "--generations", "0",
                        "--output_dir", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    cap = CPU_FLOPS_PER_PIXEL * 8 * 8
    assert config["search"]["profile"] == "cpu" and config["search"]["max_flops"] == cap
    assert config["training"]["min_steps"] == 300
    with open(out / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(int(r["flops"]) <= cap for r in rows)
    assert json.loads((out / "reconstruction.json").read_text())[0]["changed"] >= 1  # the GPT rewrote some
    best = json.loads((out / "best.json").read_text())
    assert best["test_accuracy"] >= 90
