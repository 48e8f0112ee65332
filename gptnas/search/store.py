"""The result store: every evaluation, written durably the moment it finishes.

One SQLite file per run directory, keyed by the space's canonical key, so no
architecture is evaluated twice and a run killed at any moment (kill -9
included) loses at most the evaluations still in flight. The run's identity
(space, evaluator, dataset, seed ...) is stored with it; resuming with
another identity is refused rather than mixing two experiments.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from gptnas.errors import GptnasError
from gptnas.evaluators.base import Evaluation

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    query INTEGER PRIMARY KEY,      -- 1, 2, 3 ...: the order unique architectures were submitted in
    key TEXT UNIQUE NOT NULL,       -- the space's canonical key
    encoding TEXT NOT NULL,
    generation INTEGER NOT NULL,
    result TEXT NOT NULL            -- Evaluation as JSON
);
"""
STORE_NAME = "results.sqlite"
FORMAT = "gptnas-results-1"


class ResultStore:
    def __init__(self, path: str | Path, identity: dict):
        self.path = Path(path)
        fresh = not self.path.exists()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            stored = dict(self.db.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as error:
            raise GptnasError(f"{self.path} is not a readable gptnas result store ({error}); use a new --output_dir") from None
        wanted = {"format": FORMAT, **{k: json.dumps(v, sort_keys=True) for k, v in identity.items()}}
        if fresh or not stored:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", wanted.items())
        else:
            if stored.get("format") != FORMAT:
                raise GptnasError(f"{self.path} was not written by this version of gptnas; use a new --output_dir")
            differ = [k for k in wanted if stored.get(k) != wanted[k]]
            if differ:
                raise GptnasError(
                    f"{self.path.parent} belongs to another run ({differ[0]}: {stored.get(differ[0])} here, "
                    f"{wanted[differ[0]]} asked); resume it with its own settings or use a new --output_dir"
                )
        rows = self.db.execute("SELECT key, generation, result FROM evaluations").fetchall()
        self._cache = {key: Evaluation.from_dict(json.loads(r)) for key, _, r in rows}
        self._generation = {key: generation for key, generation, _ in rows}

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, key: str) -> Evaluation | None:
        return self._cache.get(key)

    def add(self, query: int, key: str, encoding: str, generation: int, evaluation: Evaluation) -> None:
        """Commits one evaluation (a transaction of its own, so a kill never leaves half a row).

        `query` numbers follow submission order, not completion order, so parallel runs
        number their queries exactly as a serial run does."""
        if key in self._cache:
            return
        with self.db:
            self.db.execute(
                "INSERT INTO evaluations (query, key, encoding, generation, result) VALUES (?, ?, ?, ?, ?)",
                (query, key, encoding, generation, json.dumps(evaluation.to_dict())),
            )
        self._cache[key] = evaluation
        self._generation[key] = generation

    def evaluated_before(self, key: str, generation: int) -> bool:
        """Whether `key` was evaluated in an earlier generation (what a resumed run must see as the
        uninterrupted one did, whatever the killed generation had already stored)."""
        return self._generation.get(key, generation) < generation

    def evaluated_in(self, generation: int) -> int:
        """How many unique architectures were first evaluated in `generation`."""
        return self.db.execute("SELECT COUNT(*) FROM evaluations WHERE generation = ?", (generation,)).fetchone()[0]

    def evaluated_through(self, generation: int) -> int:
        """How many unique architectures were evaluated up to and including `generation`."""
        return self.db.execute("SELECT COUNT(*) FROM evaluations WHERE generation <= ?", (generation,)).fetchone()[0]

    def history(self) -> list[tuple[int, str, str, int, Evaluation]]:
        """(query, key, encoding, generation, evaluation) in evaluation order."""
        rows = self.db.execute("SELECT query, key, encoding, generation, result FROM evaluations ORDER BY query")
        return [(q, k, e, g, Evaluation.from_dict(json.loads(r))) for q, k, e, g, r in rows]

    def close(self) -> None:
        self.db.close()
