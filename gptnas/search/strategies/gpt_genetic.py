"""GPT-NAS (`gpt-ga`): the genetic algorithm with GPT reconstruction after variation.

After crossover and mutation, each layer of an offspring is selected with the
elimination rate (decaying linearly over the run) and the GPT rewrites the
blocks holding selected layers (gptnas/search/reconstruct.py). Optionally the
initial population is sampled from the GPT, and the GPT is LoRA-adapted on the
search's own elite every `adapt_every` generations (gptnas/search/adapt.py). With `--trust learned`
only a share of the offspring is rewritten, learned from how they score against the rest
(gptnas/search/trust.py).

Everything about the GPT lives here: its settings (`GptSettings`, the GPT section of `--help`), the model
(loaded on first use), the reconstruction log and the digest of the GPT's weights (both checkpointed through
`state_dict`; a resume must find the same weights, `check_resume`) and the seconds spent in it.
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Literal

from gptnas.errors import GptnasError
from gptnas.language.tokens import PARAM_TOKENS, condition
from gptnas.search.adapt import adapt, rank_weights
from gptnas.search.reconstruct import reconstruct
from gptnas.search.screen import Screen
from gptnas.search.seeds import derived_seed
from gptnas.search.strategies import register
from gptnas.search.strategies.genetic import GeneticAlgorithm
from gptnas.search.trust import gpt_share

WARM_START_TRIES = 20  # --warm_start draws up to this many uniform samples per one kept within the limits
WEIGHTS_DIGEST = re.compile(r"[0-9a-f]{64}(\+[0-9a-f]{64})?")  # `weights_sha256`: the GPT's, then its adapter's


# What a setting needs to have an effect (EvolveConfig -> bool, and the flag that gives it): see "needs" below.
def _adapting(config) -> bool:
    return config.gpt.adapt_every > 0


def _training_adapters(config) -> bool:
    return config.gpt.adapt_every > 0 or config.gpt.warm_start is not None


def _warm_starting(config) -> bool:
    return config.gpt.warm_start is not None


ADAPTERS = "--adapt_every K >= 1 or --warm_start"


@dataclass
class GptSettings:
    """The GPT of gpt-ga: which model, how it rewrites offspring, and how it adapts during the search."""

    gpt: str | None = field(default=None, metadata={"help": "ArchGPT folder or Hub id (default: the shipped model)"})
    gpt_adapter: str | None = field(default=None, metadata={"help": "a LoRA adapter (folder or Hub id) loaded on "
                                    "top of --gpt"})
    init: Literal["random", "gpt"] = field(default="random", metadata={"help": "initial population: random or gpt "
                                           "(sampled from the GPT)"})
    initial_reconstruction: bool = field(default=True, metadata={"help": "rewrite the initial population with the "
                                         "GPT (GPT-NAS); off: the GPT first acts on offspring"})
    elimination_rate: float = field(default=0.4, metadata={"help": "probability that reconstruction selects a "
                                    "layer (or a segment, --rewrite_unit segment), at the start"})
    elimination_rate_final: float = field(default=0.0, metadata={"help": "... at the last generation (linear "
                                          "decay)"})
    rewrite_unit: Literal["layer", "segment"] = field(default="layer", metadata={
        "help": "what --elimination_rate selects: each layer (GPT-NAS; the block holding a selected layer is "
                "rewritten whole, so a block of many layers nearly always is) or each segment (block, edge, stage: "
                "the rate is the share of the network's choices rewritten)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (0: greedy)"})
    top_k: int | None = field(default=None, metadata={"help": "sample only among the k most likely next tokens "
                              "(default: all that the grammar allows)"})
    quality: int | None = field(default=None, metadata={"help": "sample the initial population and rewrites under "
                                "this quality token (0..4, 4: the best fifth); needs a GPT trained with quality tokens"})
    trust: Literal["full", "learned"] = field(default="full", metadata={"help": "full: the GPT rewrites every "
                                              "offspring (GPT-NAS); learned: a share of them, learned from how "
                                              "rewritten offspring score against plain ones in this run"})
    trust_floor: float = field(default=0.1, metadata={"help": "--trust learned: the share stays within "
                               "[floor, 1 - floor]", "needs": (lambda c: c.gpt.trust == "learned", "--trust learned")})
    reconstruct_candidates: int = field(default=1, metadata={"help": "samples per rewritten segment; one is kept by "
                                        "--candidate_ranking"})
    candidate_ranking: Literal["likelihood", "network", "gain", "ratio"] = field(default="likelihood", metadata={
        "help": "likelihood (the most likely rewrite given the layers before it), network (the rewrite that makes "
                "the whole network most likely, the layers after it included), gain (the one online adaptation made "
                "most likely relative to the original GPT) or ratio (highest p(arch | best quality) / p(arch): the "
                "GPT as a predictor)",
        "needs": (lambda c: c.gpt.reconstruct_candidates > 1, "--reconstruct_candidates N > 1")})
    adapt_every: int = field(default=0, metadata={"help": "LoRA-adapt the GPT on the evaluated elite every K "
                             "generations (0: never)"})
    adapt_data: Literal["elite", "ranked"] = field(default="elite", metadata={
        "help": "what adaptation learns from: elite (the adapt_top best, rank-weighted) or ranked (every "
                "evaluation, under the quality token of its rank in this run)",
        "needs": (_adapting, "--adapt_every K >= 1")})
    adapt_top: int = field(default=20, metadata={"help": "how many of the best evaluated architectures adaptation "
                           "learns from", "needs": (_adapting, "--adapt_every K >= 1")})
    adapt_steps: int = field(default=30, metadata={"help": "optimizer steps per adaptation",
                                                   "needs": (_adapting, "--adapt_every K >= 1")})
    adapt_batch: int = field(default=32, metadata={"help": "each adaptation step learns from a random minibatch of "
                             "this many architectures when there are more", "needs": (_training_adapters, ADAPTERS)})
    adapt_lr: float = field(default=0.002, metadata={"help": "learning rate of the adaptation",
                                                     "needs": (_training_adapters, ADAPTERS)})
    warm_start: Literal["naswot", "synflow"] | None = field(default=None, metadata={
        "help": "before the GPT first writes (the initial population, unless --no-initial_reconstruction), "
                "LoRA-adapt it on the uniform samples of the space this zero-cost proxy ranks best (no query, no "
                "accuracy needed); online adaptation starts again from the GPT without it"})
    warm_start_samples: int = field(default=64, metadata={"help": "--warm_start: uniform samples scored by the "
                                    "proxy", "needs": (_warm_starting, "--warm_start naswot or synflow")})
    warm_start_top: int = field(default=16, metadata={"help": "--warm_start: the best this many are learned from, "
                                "rank-weighted", "needs": (_warm_starting, "--warm_start naswot or synflow")})
    warm_start_steps: int = field(default=30, metadata={"help": "--warm_start: optimizer steps (at --adapt_lr)",
                                  "needs": (_warm_starting, "--warm_start naswot or synflow")})

    def validate(self) -> None:
        for name in ("elimination_rate", "elimination_rate_final"):
            if not 0 <= getattr(self, name) <= 1:
                raise GptnasError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise GptnasError(f"temperature must be a finite number >= 0 (0: greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise GptnasError(f"top_k must be >= 1 (or unset for no limit), got {self.top_k}")
        if self.quality is not None and not 0 <= self.quality <= 4:
            raise GptnasError(f"quality must be 0..4 (4: the best fifth), got {self.quality}")
        if not 0 <= self.trust_floor <= 0.5:
            raise GptnasError(f"trust_floor must lie in [0, 0.5], got {self.trust_floor}")
        if self.reconstruct_candidates < 1:
            raise GptnasError(f"reconstruct_candidates must be >= 1, got {self.reconstruct_candidates}")
        if self.adapt_every < 0 or self.adapt_top < 1 or self.adapt_steps < 1 or self.adapt_batch < 1:
            raise GptnasError("adapt_every must be >= 0; adapt_top, adapt_steps and adapt_batch >= 1")
        if self.warm_start_steps < 1:
            raise GptnasError(f"warm_start_steps must be >= 1, got {self.warm_start_steps}")
        if not 1 <= self.warm_start_top <= self.warm_start_samples:
            raise GptnasError(f"need 1 <= warm_start_top <= warm_start_samples, got {self.warm_start_top} and "
                              f"{self.warm_start_samples}")
        if not (math.isfinite(self.adapt_lr) and self.adapt_lr > 0):
            raise GptnasError(f"adapt_lr must be a finite number > 0, got {self.adapt_lr}")


_pristine: dict = {}


def private_gpt(name: str | None, adapter: str | None, device: str | None):
    """A copy of the GPT for one run: online adaptation changes it, and must not leak into another run of
    the same process (the benchmark harness runs many); each model is read from disk once per process."""
    # transformers takes seconds to import: only a run that loads its GPT pays for it, not every evolve.py
    from gptnas.gpt.model import ArchGPT

    if (name, adapter, device) not in _pristine:
        _pristine[name, adapter, device] = ArchGPT.from_pretrained(name, adapter=adapter, device=device)
    return copy.deepcopy(_pristine[name, adapter, device])


@register
class GptGeneticAlgorithm(GeneticAlgorithm):
    name = "gpt-ga"
    uses_gpt = True
    settings_type = GptSettings

    def __init__(self, search, settings: GptSettings):
        self.settings = settings
        self.reconstruction_log: list[dict] = []  # what reconstruction did, one entry per call
        self.gpt_seconds = 0.0  # wall time spent in the GPT (reconstruction, adaptation), not evaluating
        self._gpt = None  # loaded on first use
        self._adapted_at: int | None = None  # the generation whose adapter the GPT carries
        self._draws: dict = {}  # GPT calls so far per (purpose, generation): screening makes several per generation
        self._arms: list[bool] | None = None  # --trust learned: which of the last reconstructed batch the GPT rewrote
        self._weights: str | None = None  # the sha256 of the weights this run's GPT loads (`weights_sha256`), once loaded
        self._warmed = False  # --warm_start: the adapter trained (or reloaded) in this process
        super().__init__(search)

    def register(self, toolbox) -> None:
        super().register(toolbox)
        toolbox.register("reconstruct", self.reconstruct)
        if self.settings.initial_reconstruction:
            toolbox.register("reconstruct_initial", self.reconstruct, generation=0)
        if self.settings.init == "gpt":
            toolbox.register("initial", self.sample_initial)

    # ------------------------------------------------------------ what the core asks of a strategy

    def state_dict(self) -> dict:
        return {"reconstruction_log": self.reconstruction_log,
                **({"gpt_weights": self._weights} if self._weights is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        log = state.get("reconstruction_log", [])
        if not isinstance(log, list) or not all(isinstance(e, dict) and _whole(e.get("gen")) and _whole(e.get("changed"))
                                                for e in log):
            raise ValueError("reconstruction_log must be a list of entries with a generation and a count of changed "
                             "networks")
        weights = state.get("gpt_weights")
        if weights is not None and not (isinstance(weights, str) and WEIGHTS_DIGEST.fullmatch(weights)):
            raise ValueError("gpt_weights must be the sha256 of the GPT's weights (and of its adapter's, after a +)")
        self.reconstruction_log = log
        self._weights = weights

    def summary(self) -> dict:
        """The GPT this run used, pinned (None until loaded), its seconds, and --trust learned's shares."""
        return {"gpt": self.settings.gpt, "gpt_source": None if self._gpt is None else self._gpt.source,
                "gpt_seconds": self.gpt_seconds,
                "gpt_share": {e["gen"]: e["share"] for e in self.reconstruction_log if "share" in e}}

    def logbook_columns(self) -> dict[str, str]:
        return {"rewritten": "offspring the GPT changed in this generation (networks, not segments)"}

    def generation_record(self, generation: int) -> dict:
        return {"rewritten": sum(e["changed"] for e in self.reconstruction_log if e["gen"] == generation)}

    def files(self) -> dict:
        return {"reconstruction.json": self.reconstruction_log} if self.reconstruction_log else {}

    # ------------------------------------------------------------ the GPT's operators

    @property
    def gpt(self):
        if self._gpt is None:
            gpt = private_gpt(self.settings.gpt, self.settings.gpt_adapter, self.search.device)
            gpt.check_space(self.search.space)
            self._weights = self._weights or gpt.weights_sha256
            self._gpt = gpt
        return self._gpt

    def check_resume(self) -> None:
        """A resumed run goes on with the GPT weights it started with, or not at all: by then the same --gpt can
        hold other weights (a retrained folder, a new Hub commit, the model shipped with a newer gptnas)."""
        from gptnas.gpt.folder import weights_sha256

        if self._weights is None:
            return
        found = weights_sha256(self.settings.gpt, self.settings.gpt_adapter)
        if found != self._weights:
            raise GptnasError(f"this run's GPT weights changed since it started (sha256 {self._weights[:12]}, now "
                              f"{found[:12]}): restore them, or start a new run with another --output_dir")

    def propose_initial(self) -> list:
        return self.tag_arms(super().propose_initial())

    def propose(self, population: list, n: int, generation: int) -> list:
        return self.tag_arms(super().propose(population, n, generation))

    def tag_arms(self, archs: list) -> list:
        """--trust learned: records in the reconstruction log which proposals (as they will be evaluated,
        after the novelty rule and the limits) the GPT rewrote and which it left plain."""
        if self._arms is not None:
            keys = [self.search.space.key(a) for a in archs]
            entry = self.reconstruction_log[-1]
            entry["gpt"] = [k for k, gpt in zip(keys, self._arms) if gpt]
            entry["plain"] = [k for k, gpt in zip(keys, self._arms) if not gpt]
            self._arms = None
        return archs

    def sample_initial(self) -> list:
        """The GPT's initial population; under --max_params, in a space with parameter bounds and with a GPT that
        knows cost tokens, written within the cap's cost bucket (`ArchGPT.complete`), where the limits would
        otherwise replace most of it by mutants and uniform samples."""
        g, space = self.settings, self.search.space
        bounded = space.param_bounds is not None and any(t in self.gpt.vocab for t in PARAM_TOKENS)
        cap = self.search.settings.max_params if bounded else None
        self.warm_start()
        started = time.perf_counter()
        samples = self.gpt.complete(space, [""], n=self.search.settings.population, temperature=g.temperature,
                                    top_k=g.top_k, seed=self.seed_of("init"), quality=g.quality, max_params=cap)[0]
        self.gpt_seconds += time.perf_counter() - started
        return samples

    def seed_of(self, *purpose) -> int:
        """The sampling seed of the next GPT call for `purpose`: the first call's from (seed, purpose) alone,
        later ones (a screened strategy proposes several times per generation) with their draw number."""
        draw = self._draws[purpose] = self._draws.get(purpose, -1) + 1
        return derived_seed(self.search.settings.seed, *purpose, *([draw] if draw else []))

    def elimination_rate(self, generation: int) -> float:
        """Decays linearly over the run: over the budget when there is one, else over the generations."""
        s, c, g = self.search, self.search.settings, self.settings
        if c.budget:  # counted up to the previous generation, so a resumed generation sees what it first saw
            fraction = min(s.spent_through(generation - 1) / c.budget, 1.0)
        elif c.generations > 0:
            fraction = min(generation / c.generations, 1.0)
        else:
            return g.elimination_rate
        return g.elimination_rate + (g.elimination_rate_final - g.elimination_rate) * fraction

    def warm_start(self) -> None:
        """--warm_start, once per process before the GPT writes: LoRA-adapts it on the `warm_start_top` of
        `warm_start_samples` uniform samples within the limits that the proxy ranks best (on resume, with the
        stored scores and the saved adapter). The first online adaptation replaces it."""
        s, g = self.search, self.settings
        if g.warm_start is None or self._warmed:
            return
        rng = random.Random(derived_seed(s.settings.seed, "warm_start"))
        samples: dict = {}
        for _ in range(WARM_START_TRIES * g.warm_start_samples):
            if len(samples) == g.warm_start_samples:
                break
            arch = s.space.sample(rng)
            if s.costs.feasible(arch):
                samples.setdefault(s.space.key(arch), arch)
        scores = Screen(s, g.warm_start).scores(samples)
        best = sorted((k for k in samples if scores[k] is not None), key=lambda k: -scores[k])[: g.warm_start_top]
        started = time.perf_counter()
        self.gpt.adapt([s.space.encode(samples[k]) for k in best], rank_weights(len(best)),
                       s.run_dir / "adapters" / "warm_start", steps=g.warm_start_steps, lr=g.adapt_lr,
                       seed=derived_seed(s.settings.seed, "warm_start", "adapt"), batch_size=g.adapt_batch)
        self.gpt_seconds += time.perf_counter() - started
        self._warmed = True

    def maybe_adapt(self, generation: int) -> None:
        """Every `adapt_every` generations, the GPT is LoRA-adapted on the elite evaluated so far."""
        s, g = self.search, self.settings
        if not g.adapt_every or generation < g.adapt_every:
            return
        due = generation - generation % g.adapt_every
        if self._adapted_at == due:
            return
        started = time.perf_counter()
        adapt(self.gpt, s.store, s.run_dir / "adapters" / f"generation_{due}", data=g.adapt_data, top=g.adapt_top,
              steps=g.adapt_steps, lr=g.adapt_lr, seed=derived_seed(s.settings.seed, "adapt", due),
              batch_size=g.adapt_batch)
        self._adapted_at = due
        self.gpt_seconds += time.perf_counter() - started

    def reconstruct(self, archs: list, generation: int) -> list:
        s, g = self.search, self.settings
        rate = self.elimination_rate(generation)
        if rate <= 0:
            return archs
        self.warm_start()
        self.maybe_adapt(generation)
        trust = {}
        if g.trust == "learned":
            trust["share"] = gpt_share(self.reconstruction_log, generation, s.fitness_in, g.trust_floor)
            self._arms = [s.rng.random() < trust["share"] for _ in archs]
        chosen = archs if self._arms is None else [a for a, gpt in zip(archs, self._arms) if gpt]
        started = time.perf_counter()
        rewritten, stats = reconstruct(
            self.gpt, s.space, chosen, rate, s.rng, seed=self.seed_of("reconstruct", generation),
            temperature=g.temperature, top_k=g.top_k, candidates=g.reconstruct_candidates,
            ranking=g.candidate_ranking, condition=condition(g.quality), limits=self.cost_limits(),
            feasible=s.costs.feasible if s.costs.limited else None, unit=g.rewrite_unit,
        )
        seconds = time.perf_counter() - started
        self.gpt_seconds += seconds
        self.reconstruction_log.append({"gen": generation, "rate": rate, "seconds": round(seconds, 3), **vars(stats),
                                        **trust})
        if self._arms is None:
            return rewritten
        rewrites = iter(rewritten)
        return [next(rewrites) if gpt else arch for arch, gpt in zip(archs, self._arms)]

    def cost_limits(self) -> list:
        """(cost bounds, cap) of each of --max_params and --max_flops that is set, where the space has cost
        bounds: reconstruction then writes within them instead of leaving the limits to replace its rewrites."""
        s, c = self.search, self.search.settings
        limits = []
        for metric, cap in (("params", c.max_params), ("flops", c.max_flops)):
            bounds = cap and s.space.cost_bounds(metric, s.evaluator.input_size, s.evaluator.num_classes)
            if bounds:
                limits.append((bounds, cap))
        return limits


def _whole(value) -> bool:
    """Whether `value` is a count or generation number (a non-negative int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
