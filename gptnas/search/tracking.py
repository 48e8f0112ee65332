"""A live view of a search: one point per generation in TensorBoard or Weights & Biases (`--report_to`).

It uses accelerate's trackers, as train_gpt.py does, so the same flag names
the same tools. Logged per generation: best and mean fitness, queries, the
seconds spent in evaluation, the strategy's own figures (gpt-ga: `strategy/gpt_seconds`),
the best architecture as text and, in a multi-objective search, the Pareto front as a table.
"""

from __future__ import annotations

from accelerate.tracking import TensorBoardTracker, WandBTracker

from gptnas.errors import GptnasError


class Tracker:
    def __init__(self, report_to: str, run_dir, config: dict):
        names = {"none": [], "all": ["tensorboard", "wandb"]}.get(report_to, [report_to])
        self.trackers = [_start(name, run_dir) for name in names]
        for tracker in self.trackers:
            tracker.store_init_configuration({k: v if isinstance(v, (int, float, bool)) else str(v)
                                              for k, v in config.items()})

    def log(self, search, generation: int) -> None:
        if not self.trackers:
            return
        history = search.store.history()
        best = max(search.hall_of_fame, key=lambda c: c.fitness.values[0])
        values = {
            "fitness/best": best.fitness.values[0],
            "fitness/mean": search.logbook[-1]["mean"],
            "queries": len(history),
            "seconds/evaluation": sum(e.seconds for *_, e in history),
            "best_architecture": search.space.encode(best.arch),
        }
        values |= {f"strategy/{name}": value for name, value in search.strategy.summary().items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        if search.pareto:
            names = " | ".join(search.costs.objectives)
            rows = [" | ".join(f"{v:.6g}" for v in c.fitness.values) for c in search.hall_of_fame]
            values["pareto_front"] = "\n".join([f"| {names} |", "|" + "---|" * len(search.costs.objectives),
                                                *[f"| {row} |" for row in rows]])
        for tracker in self.trackers:
            tracker.log(values, step=generation)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for tracker in self.trackers:
            tracker.finish()


def _start(name: str, run_dir):
    try:
        tracker = TensorBoardTracker("search", run_dir / "tracking") if name == "tensorboard" else WandBTracker("gptnas")
        tracker.start()
    except ImportError as error:
        raise GptnasError(f"--report_to {name} needs its package ({error.name}): pip install {error.name}") from None
    return tracker
