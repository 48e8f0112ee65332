"""Zero-cost screening (`--screen naswot|synflow --screen_pool K`): the strategy proposes K times as many
architectures as it will evaluate, a zero-cost proxy ranks them, and only the best are evaluated.

One mechanism for every strategy: each registers what it wants evaluated next as `propose` (and
`propose_initial`) operators on its toolbox, and with screening on, `Strategy` decorates them with
`Screen.pool`. The decorated operator runs K times (its generators run on, so the K batches differ),
the distinct architectures of the K batches are scored, and as many as one batch holds are returned,
best first (so a budget that ends mid-batch spends its last queries on the best). Queries are counted as
before: only evaluations count, a proxy score costs none.

The proxy (gptnas/evaluators/proxy.py) scores each network seeded by the run's seed, on N(0, 1) inputs at
the evaluator's resolution, so screening needs no data. Every score is stored in the result store under
the architecture's key the moment it is computed: a resumed run ranks from the stored scores and draws
exactly the same queries, and the proxy's seconds are on record beside the GPT's.
"""

from __future__ import annotations

import functools
import logging
import math

from gptnas.evaluators.proxy import ProxyEvaluator, ProxySettings

log = logging.getLogger(__name__)
# naswot's minibatch: the smallest whose Kendall tau is within 0.05 of batch 64's on every benchmark table, at
# half its cost (benchmarks/RESULTS.md, "Zero-cost screening"); synflow scores one all-ones input anyway.
BATCH_SIZE = 32


def identity(settings) -> dict:
    """What screening adds to a run's identity (`settings`: SearchSettings; unset when screening is off)."""
    return {"screen": settings.screen, "screen_pool": settings.screen_pool if settings.screen else None}


class Screen:
    def __init__(self, search, proxy: str | None = None):
        """Screens with `proxy`, by default the run's --screen (gpt-ga's --warm_start scores with its own)."""
        c = search.settings
        self.search, self.pool_size = search, c.screen_pool
        settings = ProxySettings(proxy=proxy or c.screen, batch_size=BATCH_SIZE, random_inputs=True, seed=c.seed,
                                 device=search.device, image_size=search.evaluator.input_size, costs=False)
        self.proxy = ProxyEvaluator(search.space, "none", settings)

    def pool(self, propose):
        """Decorates a proposal operator: `screen_pool` calls of it, the proxy's best of what they proposed."""

        @functools.wraps(propose)
        def screened(*args, **kwargs) -> list:
            batches = [propose(*args, **kwargs) for _ in range(self.pool_size)]
            return self.best([arch for batch in batches for arch in batch], len(batches[0]))

        return screened

    def best(self, archs: list, n: int) -> list:
        """The `n` best of `archs` by proxy score, best first (ties in proposal order); each distinct network
        once, unless fewer than `n` are distinct (then repeats fill up, in proposal order)."""
        space = self.search.space
        distinct, repeats = {}, []
        for arch in archs:
            key = space.key(arch)
            if key in distinct:
                repeats.append(arch)
            else:
                distinct[key] = arch
        scores = self.scores(distinct)
        ranked = sorted(distinct, key=lambda key: -scores[key] if scores[key] is not None else math.inf)
        log.debug("screened %d proposals (%d distinct) for %d evaluations", len(archs), len(distinct), n)
        return ([distinct[key] for key in ranked] + repeats)[:n]

    def scores(self, archs: dict) -> dict:
        """{key: proxy score, None where the network failed it} of `archs` ({key: arch}); those not in the
        result store yet are scored (through the search's executor) and stored one by one."""
        store = self.search.store
        todo = [(key, arch) for key, arch in archs.items() if key not in store.proxy_scores]
        jobs = self.search.executor.run(self.proxy, self.search.space.name, [arch for _, arch in todo])
        for index, evaluation in jobs:
            store.add_proxy_score(todo[index][0], evaluation.fitness if evaluation.ok else None, evaluation.seconds)
        return {key: store.proxy_scores[key] for key in archs}
