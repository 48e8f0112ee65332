"""GPT-NAS (`gpt-ga`): the genetic algorithm with GPT reconstruction after variation.

After crossover and mutation, each layer of an offspring is selected with the
elimination rate (decaying linearly over the run) and the GPT rewrites the
blocks holding selected layers (gptnas/search/reconstruct.py). Optionally the
initial population is sampled from the GPT, and the GPT is LoRA-adapted on the
search's own elite every `adapt_every` generations (gptnas/search/adapt.py). With `--trust learned`
only a share of the offspring is rewritten, learned from how they score against the rest
(gptnas/search/trust.py).
"""

from __future__ import annotations

import time

from gptnas.language.tokens import condition
from gptnas.search.core import derived_seed
from gptnas.search.strategies.genetic import GeneticAlgorithm
from gptnas.search.trust import gpt_share


class GptGeneticAlgorithm(GeneticAlgorithm):
    name = "gpt-ga"

    def __init__(self, search):
        self._gpt = None  # loaded on first use
        self._adapted_at: int | None = None  # the generation whose adapter the GPT carries
        self._draws: dict = {}  # GPT calls so far per (purpose, generation): screening makes several per generation
        self._arms: list[bool] | None = None  # --trust learned: which of the last reconstructed batch the GPT rewrote
        super().__init__(search)

    def register(self, toolbox) -> None:
        super().register(toolbox)
        toolbox.register("reconstruct", self.reconstruct)
        if self.search.config.init == "gpt":
            toolbox.register("initial", self.sample_initial)

    @property
    def gpt(self):
        if self._gpt is None:
            self._gpt = self.search.gpt_loader()
        return self._gpt

    @property
    def gpt_source(self) -> dict | None:
        """Which GPT this run used, pinned (Hub commit, file hashes); None until it is loaded."""
        return None if self._gpt is None else self._gpt.source

    def propose_initial(self) -> list:
        return self.tag_arms(super().propose_initial())

    def propose(self, population: list, n: int, generation: int) -> list:
        return self.tag_arms(super().propose(population, n, generation))

    def tag_arms(self, archs: list) -> list:
        """--trust learned: records in the reconstruction log which proposals (as they will be evaluated,
        after the novelty rule and the limits) the GPT rewrote and which it left plain."""
        if self._arms is not None:
            keys = [self.search.space.key(a) for a in archs]
            entry = self.search.reconstruction_log[-1]
            entry["gpt"] = [k for k, gpt in zip(keys, self._arms) if gpt]
            entry["plain"] = [k for k, gpt in zip(keys, self._arms) if not gpt]
            self._arms = None
        return archs

    def sample_initial(self) -> list:
        c = self.search.config
        started = time.perf_counter()
        samples = self.gpt.complete(self.search.space, [""], n=c.population, temperature=c.temperature,
                                    top_k=c.top_k, seed=self.seed_of("init"), quality=c.quality)[0]
        self.search.gpt_seconds += time.perf_counter() - started
        return samples

    def seed_of(self, *purpose) -> int:
        """The sampling seed of the next GPT call for `purpose`: the first call's as it always was, later ones
        (a screened strategy proposes several times per generation) each their own."""
        draw = self._draws[purpose] = self._draws.get(purpose, -1) + 1
        return derived_seed(self.search.config.seed, *purpose, *([draw] if draw else []))

    def elimination_rate(self, generation: int) -> float:
        """Decays linearly over the run: over the budget when there is one, else over the generations."""
        s, c = self.search, self.search.config
        if c.budget:  # counted up to the previous generation, so a resumed generation sees what it first saw
            fraction = min(s.store.evaluated_through(generation - 1) / c.budget, 1.0)
        elif c.generations > 0:
            fraction = min(generation / c.generations, 1.0)
        else:
            return c.elimination_rate
        return c.elimination_rate + (c.elimination_rate_final - c.elimination_rate) * fraction

    def maybe_adapt(self, generation: int) -> None:
        """Every `adapt_every` generations, the GPT is LoRA-adapted on the elite evaluated so far."""
        from gptnas.search.adapt import adapt

        s, c = self.search, self.search.config
        if not c.adapt_every or generation < c.adapt_every:
            return
        due = generation - generation % c.adapt_every
        if self._adapted_at == due:
            return
        started = time.perf_counter()
        adapt(self.gpt, s.store, s.run_dir / "adapters" / f"generation_{due}", data=c.adapt_data, top=c.adapt_top,
              steps=c.adapt_steps, lr=c.adapt_lr, seed=derived_seed(c.seed, "adapt", due), batch_size=c.adapt_batch)
        self._adapted_at = due
        s.gpt_seconds += time.perf_counter() - started

    def reconstruct(self, archs: list, generation: int) -> list:
        from gptnas.search.reconstruct import reconstruct

        s, c = self.search, self.search.config
        rate = self.elimination_rate(generation)
        if rate <= 0:
            return archs
        self.maybe_adapt(generation)
        trust = {}
        if c.trust == "learned":
            trust["share"] = gpt_share(s.reconstruction_log, generation, s.store.fitness_in, c.trust_floor)
            self._arms = [s.rng.random() < trust["share"] for _ in archs]
        chosen = archs if self._arms is None else [a for a, gpt in zip(archs, self._arms) if gpt]
        started = time.perf_counter()
        rewritten, stats = reconstruct(
            self.gpt, s.space, chosen, rate, s.rng, seed=self.seed_of("reconstruct", generation),
            temperature=c.temperature, top_k=c.top_k, candidates=c.reconstruct_candidates, ranking=c.candidate_ranking,
            condition=condition(c.quality),
        )
        seconds = time.perf_counter() - started
        s.gpt_seconds += seconds
        s.reconstruction_log.append({"gen": generation, "rate": rate, "seconds": round(seconds, 3), **vars(stats), **trust})
        if self._arms is None:
            return rewritten
        rewrites = iter(rewritten)
        return [next(rewrites) if gpt else arch for arch, gpt in zip(archs, self._arms)]
