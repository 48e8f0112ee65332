"""Spaces declared in YAML files, measured: the declared `cifar` against the class on 1,000 samples, the declared
NAS-Bench-Macro and Channel-Bench spaces against their classes on all their architectures, the shipped GPT's
samples of the example spaces, and how long loading a space file takes.

    python benchmarks/declared_spaces.py [--samples 1000]

Prints a markdown report (the README's "Your own search space" and benchmarks/RESULTS.md quote it)."""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from gptnas import ArchGPT
from gptnas.config import load_yaml
from gptnas.spaces import get_space
from gptnas.spaces.declared import DeclaredSpace

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "configs" / "spaces"
EXAMPLES = ("mobile96", "resnet20-widths")


def against_the_class(samples: int) -> list[str]:
    """Counts of samples on which the declared cifar and the class agree, per property."""
    cifar, declared, rng = get_space("cifar"), get_space(SPACES / "cifar-declared.yaml"), random.Random(0)
    same = dict.fromkeys(("encoding", "allowed tokens after every prefix", "parameters and MACs", "network"), 0)
    for _ in range(samples):
        arch = cifar.sample(rng)
        text = cifar.encode(arch)
        twin = declared.decode(text)
        same["encoding"] += declared.encode(twin) == text
        ours, theirs, agree = declared.start(), cifar.start(), True
        for token in text.split():
            agree &= declared.allowed(ours) == cifar.allowed(theirs)
            ours, theirs = declared.step(ours, token), cifar.step(theirs, token)
        same["allowed tokens after every prefix"] += agree and declared.allowed(ours) == cifar.allowed(theirs)
        same["parameters and MACs"] += declared.cost(twin) == cifar.cost(arch)
        torch.manual_seed(0)
        a = declared.build_model(twin)
        torch.manual_seed(0)
        b = cifar.build_model(arch)
        same["network"] += repr(a) == repr(b) and all(torch.equal(x, y) for x, y in
                                                       zip(a.state_dict().values(), b.state_dict().values()))
    rows = [f"| {name} | {count} / {samples} |" for name, count in same.items()]
    for metric, size in (("params", None), ("flops", 32), ("flops", 8)):
        ours, theirs = declared.cost_bounds(metric, size), cifar.cost_bounds(metric, size)
        bounds = [b.completion(b.grammar.language.start_context()) for b in (ours, theirs)]
        label = metric if size is None else f"{metric} at {size}x{size}"
        rows.append(f"| cost bounds of the whole grammar, {label} | {'equal' if bounds[0] == bounds[1] else bounds} "
                    f"({bounds[0][0]:,.0f} to {bounds[0][1]:,.0f}) |")
    return ["| the declared `cifar` against the class | same |", "|---|---|", *rows]


def benchmarks_against_the_classes() -> list[str]:
    """Every architecture of NAS-Bench-Macro and of both Channel-Bench spaces against its network in the file."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from test_declared_spaces import benchmark_twins

    rows = ["| built-in space | architectures, each a distinct network of the file | valid in the file's grammar | "
            "same parameters and MACs |", "|---|---|---|---|"]
    for name in ("nas-bench-macro", "channel-bench-mobilenet", "channel-bench-resnet"):
        path, archs, twin = benchmark_twins(name)
        cls, declared = get_space(name), get_space(path)
        twins = [twin(g) for g in archs]
        valid = sum(declared.is_valid(t) for t in twins)
        costs = sum(declared.cost(t) == cls.cost(g) for g, t in zip(archs, twins))
        rows.append(f"| {name} | {len(set(twins))} / {len(archs)} | {valid} / {len(archs)} | {costs} / {len(archs)} |")
    return rows


def gpt_samples(samples: int) -> list[str]:
    gpt = ArchGPT.from_pretrained()
    rows = ["| space | condition | valid and within the limits | distinct | max MACs / limit | s per 100 |",
            "|---|---|---|---|---|---|"]
    for name in EXAMPLES:
        space = get_space(SPACES / f"{name}.yaml")
        for quality in (None, 4):
            started = time.perf_counter()
            archs = gpt.complete(space, n=samples, seed=0, quality=quality)[0]
            seconds = time.perf_counter() - started
            valid = sum(space.is_valid(a) for a in archs)
            cap = space.limits.get("flops")
            peak = f"{max(space.cost(a)['flops'] for a in archs) / cap:.3f}" if cap else "no limit"
            rows.append(f"| {name} | {'q4' if quality == 4 else 'none'} | {valid} / {samples} | "
                        f"{len({space.key(a) for a in archs})} | {peak} | {100 * seconds / samples:.1f} |")
    return rows


def load_times() -> list[str]:
    rows = ["| space file | load and grammar (s) | with the limits' check (s) |", "|---|---|---|"]
    get_space(SPACES / "mobile96.yaml")  # torch's first meta-device forward imports its compiler: once a process
    for path in sorted(SPACES.glob("*.yaml")):
        definition = load_yaml(path)
        bare = {k: v for k, v in definition.items() if k != "limits"}
        started = time.perf_counter()
        DeclaredSpace(bare, str(path))
        grammar = time.perf_counter() - started
        started = time.perf_counter()
        DeclaredSpace(definition, str(path))
        rows.append(f"| {path.name} | {grammar:.3f} | {time.perf_counter() - started:.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    samples = parser.parse_args().samples
    for section in (load_times, lambda: against_the_class(samples), benchmarks_against_the_classes,
                    lambda: gpt_samples(samples)):
        print("\n".join(section()), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
