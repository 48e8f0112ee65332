"""A search's checkpoint: the state after its last finished generation, as plain JSON.

It holds encodings, never objects, so loading a run directory someone handed
you runs no code: the candidates are rebuilt by decoding their architectures
and reading their fitness from the result store. The hall of fame keeps its
order (ties included), so a resumed run reports exactly what an uninterrupted
one does. It also records what it expects of the result store (rows, last
query, a digest of every evaluation through its generation); a store that does
not match (copied without its -wal file, emptied, or another run's) is refused
before anything is written.
"""

from __future__ import annotations

import json
import logging

from gptnas.errors import QUOTE_LIMIT, GptnasError, quote
from gptnas.files import read_text, write_json

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.json"
MAX_GENERATION = 2**62  # what SQLite can compare with (the search's own limit is checked against its settings)


def save(search, generation: int) -> None:
    encode = search.space.encode
    write_json(search.run_dir / CHECKPOINT, {
        "generation": generation,
        "population": [encode(c.arch) for c in search.population],
        "hall_of_fame": [encode(c.arch) for c in search.hall_of_fame],
        "logbook": list(search.logbook),
        "strategy": search.strategy.state_dict(),
        "store": search.store.digest(generation),
    })


def exists(run_dir) -> bool:
    return (run_dir / CHECKPOINT).exists()


def verify(search) -> None:
    """GptnasError unless the result store holds exactly what the checkpoint was written with."""
    path = search.run_dir / CHECKPOINT
    if not path.exists():
        return
    state = _read(path)
    expected, found = state.get("store"), search.store.digest(state["generation"])
    if expected != found:
        raise GptnasError(
            f"{search.store.path} does not hold what {path.name} expects ({_describe(expected)} expected, "
            f"{_describe(found)} found): restore the run directory whole (results.sqlite with its -wal file) "
            "or use a new --output_dir")


def check(search) -> None:
    """GptnasError unless the checkpoint, when there is one, can be resumed: checked whole before the run starts."""
    path = search.run_dir / CHECKPOINT
    if path.exists():
        _parse(search, path)


def load(search) -> int:
    """Restores `search` from its checkpoint; the last finished generation, or -1 when there is none."""
    path = search.run_dir / CHECKPOINT
    if not path.exists():
        return -1
    population, hall, rows, generation = _parse(search, path)
    for row in rows:
        search.logbook.record(**row)
    search.population = population
    # DEAP's hall of fame: items best first, keys (fitnesses) ascending
    search.hall_of_fame.items, search.hall_of_fame.keys = hall, [c.fitness for c in reversed(hall)]
    search.logbook.buffindex = len(search.logbook)  # already logged by the run that wrote them
    log.info("resuming after generation %d", generation)
    return generation


def upgrade(state: dict) -> dict:
    """A checkpoint in today's format. Checkpoints written before strategies kept their own state hold
    gpt-ga's reconstruction log at the top level; every strategy's state now sits under "strategy"."""
    if "strategy" in state:
        return state
    old = dict(state)
    log = old.pop("reconstruction_log", [])
    return {**old, "strategy": {"reconstruction_log": log}}


def _parse(search, path) -> tuple[list, list, list[dict], int]:
    """(population, hall of fame, logbook rows, generation) of the checkpoint at `path`, every part checked
    (the strategy's state is loaded into it); GptnasError naming what is wrong."""
    state = upgrade(_read(path))
    try:
        population = [_restore(search, encoding) for encoding in state["population"]]
        hall = [_restore(search, encoding) for encoding in state["hall_of_fame"]]
        rows, generation = state["logbook"], state["generation"]
        _check_shape(search.settings, population, hall, rows, generation)
        search.strategy.load_state_dict(state["strategy"])
    except (ValueError, KeyError, TypeError, GptnasError) as error:
        raise _corrupt(path, error) from None
    return population, hall, rows, generation


def _check_shape(settings, population: list, hall: list, rows, generation) -> None:
    """ValueError unless the checkpoint's parts fit the run: a whole population (a cut one would run on with
    no new evaluations; with --multi_fidelity, one filling up with promoted networks), a hall of fame, one
    logbook row (a mapping) per generation so far."""
    if generation > settings.generations:
        raise ValueError(f"generation {generation} is past the run's last, {settings.generations}")
    if not (0 < len(population) <= settings.population if settings.multi_fidelity else
            len(population) == settings.population):
        raise ValueError(f"its population has {len(population)} networks, the run's {settings.population}")
    if not hall:
        raise ValueError("its hall of fame is empty")
    if not isinstance(rows, list) or len(rows) != generation + 1 \
            or not all(isinstance(row, dict) and all(isinstance(k, str) for k in row) for row in rows):
        raise ValueError(f"its logbook is not one row of named values for each of generations 0..{generation}")


def _read(path) -> dict:
    try:
        state = json.loads(read_text(path))
        generation = state["generation"]
        if isinstance(generation, bool) or not isinstance(generation, int) or not 0 <= generation < MAX_GENERATION:
            raise ValueError(f"generation {quote(generation)} is not a generation number")
        dict(state["store"])
        return state
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise _corrupt(path, error) from None


def _corrupt(path, error: BaseException) -> GptnasError:
    return GptnasError(f"{path} is corrupt ({str(error)[:QUOTE_LIMIT]}); start a new run with another --output_dir")


def _describe(digest) -> str:
    if not isinstance(digest, dict):
        return "no record"
    return f"{digest.get('rows')} evaluations through query {digest.get('last_query')}, digest {str(digest.get('sha256'))[:12]}"


def _restore(search, encoding: str):
    arch = search.space.decode(encoding)
    key = search.space.key(arch)
    if key not in search.store:
        raise GptnasError(f"checkpointed architecture {key} is not in the result store")
    return search.candidate(arch, key)
