"""Optuna's TPE sampler as an external peer (Bergstra et al. 2011; with two or three objectives Optuna's TPE is
MOTPE, Ozaki et al. 2022), driven through Optuna's ask-and-tell interface over the space's own choices.

An architecture is the sequence of choices the space's grammar offers (`SearchSpace.choose`, from the
stem to the head). Each choice with more than one option is one categorical parameter of
the trial, named by its position and context, so a space whose later choices depend on earlier ones (the
number of blocks in `cifar`) is a conditional space, which Optuna samples define-by-run. Every generation
asks `population` trials, evaluates them through the shared core and tells Optuna their objectives (a
network evaluated before is told its stored values and costs no query; one outside the hard limits is
told it failed, and the network the core evaluates in its place is added as a trial of its own).

Optuna is an optional extra (`pip install 'gptnas[peers]'`). The sampler is seeded by the run's seed, so a
resumed run replays its trials, finds every evaluation in the result store and continues exactly; it keeps
no checkpoint.

With --multi_fidelity, a trial whose network was not promoted to the full schedule is told it was pruned,
with its fitness at the highest rung it reached as its last intermediate value (one objective), which is how
Optuna's own pruners stop a trial and how its TPE ranks such trials below the finished ones.
"""

from __future__ import annotations

import logging

from deap import tools

from gptnas.errors import GptnasError
from gptnas.search.seeds import derived_seed
from gptnas.search.strategies import Strategy, register


def _optuna():
    try:
        import optuna  # an optional extra: only this strategy needs it
    except ImportError:
        raise GptnasError("--strategy tpe needs Optuna: pip install 'gptnas[peers]'") from None
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


@register
class TreeParzen(Strategy):
    name = "tpe"
    reads = ("multi_fidelity",)

    def register(self, toolbox) -> None:
        s = self.search
        optuna = _optuna()
        sampler = optuna.samplers.TPESampler(seed=derived_seed(s.settings.seed, "tpe") % 2**32)
        directions = ["maximize"] + ["minimize"] * (len(s.costs.objectives) - 1)
        self.study = optuna.create_study(directions=directions, sampler=sampler)
        toolbox.register("propose", self.propose)
        toolbox.register("evaluate", s.evaluate)
        select = tools.selNSGA2 if s.pareto else tools.selBest
        toolbox.register("select", select, k=s.settings.population)

    def suggested(self, trial):
        """The architecture whose choices `trial` suggests."""
        def pick(name, options, _):
            labels = [repr(option) for option in options]
            return options[labels.index(trial.suggest_categorical(name, labels))]
        return self.search.space.choose(pick)

    def tell(self, trial, arch, candidate) -> None:
        """Tells Optuna the outcome of `candidate`: finished at the full schedule, or pruned below it."""
        optuna, values = _optuna(), candidate.fitness.values
        if candidate.fidelity == 1.0:
            if trial is None:
                self.study.add_trial(self.as_trial(arch, values=list(values)))
            else:
                self.study.tell(trial, values)
            return
        intermediate = {0: values[0]} if len(values) == 1 else {}  # Optuna reports one objective only
        if trial is None:
            self.study.add_trial(self.as_trial(arch, state=optuna.trial.TrialState.PRUNED,
                                               intermediate_values=intermediate))
        else:
            for step, value in intermediate.items():
                trial.report(value, step)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def as_trial(self, arch, **outcome):
        """An Optuna trial of `arch` (not asked for: made feasible by the core) with its `outcome` (values, or a
        state and intermediate values)."""
        optuna, params, distributions = _optuna(), {}, {}
        given = [segment.payload for segment in self.search.space.segments(arch)]

        def pick(name, options, i):
            labels = [repr(option) for option in options]
            params[name], distributions[name] = repr(given[i]), optuna.distributions.CategoricalDistribution(labels)
            return given[i]
        self.search.space.choose(pick)
        return optuna.trial.create_trial(params=params, distributions=distributions, **outcome)

    def propose(self) -> list[tuple]:
        """`population` (trial, architecture) pairs. An asked architecture outside the hard limits is made
        feasible as every strategy's are (mutated, then resampled: `Search.make_feasible`); Optuna is told its
        trial failed, and the architecture evaluated in its place comes without a trial (None)."""
        s, proposals = self.search, []
        for _ in range(s.settings.population):
            trial = self.study.ask()
            arch = self.suggested(trial)
            if s.costs.feasible(arch):
                proposals.append((trial, arch))
            else:
                self.study.tell(trial, state=_optuna().trial.TrialState.FAIL)
                proposals.append((None, s.make_feasible(arch)))
        return proposals

    def run(self) -> list:
        s, toolbox = self.search, self.toolbox
        everyone = []
        for generation in range(s.settings.generations + 1):
            s.seed_generation(generation)
            proposals = toolbox.propose()
            candidates = toolbox.evaluate([arch for _, arch in proposals], generation)
            for (trial, arch), candidate in zip(proposals, candidates):
                self.tell(trial, arch, candidate)
            everyone += s.full_fidelity(candidates)
            s.record(generation, toolbox.select(everyone), s.store.evaluated_in(generation))
        return s.population
