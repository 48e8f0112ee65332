"""The result store: every evaluation, written durably the moment it finishes.

One SQLite file per run directory, keyed by the space's canonical key, so no
architecture is evaluated twice and a run killed at any moment (kill -9
included) loses at most the evaluations still in flight. The run's identity
(space, evaluator, dataset, seed ...) is stored with it; resuming with
another identity is refused rather than mixing two experiments. With
zero-cost screening (gptnas/search/screen.py) it also holds the proxy score
of every architecture screened, so a resumed run ranks from the same scores. With multi-fidelity search
(gptnas/search/fidelity.py), evaluations below the full schedule are rows of `rungs`, keyed by
(key, fidelity); `evaluations` holds the full-schedule ones, numbered as queries.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path

from gptnas.errors import QUOTE_LIMIT, GptnasError, one_line, quote
from gptnas.evaluators.base import WORST_FITNESS, Evaluation
from gptnas.files import link_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    query INTEGER PRIMARY KEY,      -- 1, 2, 3 ...: the order unique architectures were submitted in
    key TEXT UNIQUE NOT NULL,       -- the space's canonical key
    encoding TEXT NOT NULL,
    generation INTEGER NOT NULL,
    result TEXT NOT NULL            -- Evaluation as JSON
);
CREATE TABLE IF NOT EXISTS rungs (
    key TEXT NOT NULL,              -- the space's canonical key of an architecture evaluated below the full schedule
    fidelity REAL NOT NULL,         -- the share of the full schedule it was evaluated at (--multi_fidelity)
    encoding TEXT NOT NULL,
    generation INTEGER NOT NULL,
    result TEXT NOT NULL,           -- Evaluation as JSON
    PRIMARY KEY (key, fidelity)
);
CREATE TABLE IF NOT EXISTS proxy_scores (
    key TEXT PRIMARY KEY,           -- the space's canonical key of a screened architecture
    score REAL,                     -- the --screen proxy's score; NULL when the network failed it
    seconds REAL NOT NULL           -- wall time of building and scoring it
);
"""
FORMAT = "gptnas-results-1"
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the store


STATUSES = ("ok", "diverged", "out_of_memory", "failed")  # what Evaluation.status may be


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ResultStore:
    def __init__(self, path: str | Path, identity: dict, *, must_exist: bool = False):
        """Opens (or creates) the store of the run with `identity`; with `must_exist`, a store that holds
        no run yet (missing, empty, or never written) is refused rather than started."""
        self.path = Path(path)
        for name in (self.path.name, *(self.path.name + suffix for suffix in SIDE_FILES)):
            if (self.path.parent / name).is_symlink():  # SQLite would write through it
                raise link_error(self.path.parent / name)
        if must_exist and not self.holds_a_run(self.path):
            raise GptnasError(f"{self.path} holds no results although the run directory has a checkpoint; "
                              "restore results.sqlite (with its -wal file) or use a new --output_dir")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self._check_schema(complete=False)  # before this process changes anything in a handed file
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self._check_schema(complete=True)
            stored = dict(self.db.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as error:
            raise GptnasError(f"{self.path} is not a readable gptnas result store ({error}); use a new --output_dir") from None
        wanted = {"format": FORMAT, **{k: json.dumps(v, sort_keys=True) for k, v in identity.items()}}
        if not stored:
            with self._transaction():  # all meta rows or none: a reader never sees half of them
                self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", wanted.items())
        else:
            if stored.get("format") != FORMAT:
                raise GptnasError(f"{self.path} was not written by this version of gptnas; use a new --output_dir")
            # An identity setting the store does not record counts as unset (null).
            differ = [k for k in wanted if stored.get(k, "null") != wanted[k]]
            if differ:
                raise GptnasError(
                    f"{self.path.parent} belongs to another run ({differ[0]}: "
                    f"{str(stored.get(differ[0]))[:QUOTE_LIMIT]} here, {wanted[differ[0]][:QUOTE_LIMIT]} asked); "
                    "resume it with its own settings or use a new --output_dir"
                )
        rows = self.db.execute("SELECT query, key, generation, result FROM evaluations").fetchall()
        self._cache = {key: self._evaluation(query, key, generation, r) for query, key, generation, r in rows}
        self._generation = {key: generation for _, key, generation, _ in rows}
        self._rungs: dict[tuple[str, float], Evaluation] = {}
        for key, fidelity, generation, result in self.db.execute(
                "SELECT key, fidelity, generation, result FROM rungs ORDER BY rowid"):
            if not _finite(fidelity) or not 0 < fidelity < 1:
                raise self._refused(f"the rung of {quote(key)} has fidelity {quote(fidelity)}, not in (0, 1)")
            self._rungs[key, fidelity] = self._evaluation(f"{key}@{fidelity}", key, generation, result)
            self._generation[key] = min(self._generation.get(key, generation), generation)
        self.proxy_scores: dict[str, float | None] = {}
        for key, score in self.db.execute("SELECT key, score FROM proxy_scores"):
            if not isinstance(key, str) or not (score is None or _finite(score)):
                raise self._refused(f"the proxy score of {quote(key)} is {quote(score)}, not a finite number")
            self.proxy_scores[key] = score

    def _check_schema(self, complete: bool) -> None:
        """GptnasError unless the file holds exactly the tables SCHEMA creates (with `complete` False, a subset
        of them: a store of an older gptnas gains the newer ones), with their columns: no trigger, no view, no
        other table or index. SQLite runs what a crafted schema holds, so it is checked before any read."""
        found = self._schema(self.db)
        with closing(sqlite3.connect(":memory:")) as reference:
            reference.executescript(SCHEMA)
            wanted = self._schema(reference)
        for entry, columns in found.items():
            if entry not in wanted or wanted[entry] != columns:
                raise self._refused(f"it holds {entry[0]} {quote(entry[1])}, which gptnas does not create")
        if complete and found.keys() != wanted.keys():
            missing = sorted(set(wanted) - set(found))[0]
            raise self._refused(f"it lacks {missing[0]} {missing[1]}")

    @staticmethod
    def _schema(db) -> dict:
        """{(type, name): columns} of every entry of a database's schema (a table's columns, else None)."""
        entries = db.execute("SELECT type, name FROM sqlite_master").fetchall()
        return {(kind, name): db.execute("SELECT name, type, [notnull], pk FROM pragma_table_info(?)",
                                         (name,)).fetchall() if kind == "table" else None
                for kind, name in entries}

    def _evaluation(self, query, key, generation, result: str) -> Evaluation:
        """The Evaluation a row holds, checked: numbered, keyed, of a generation, JSON, a finite fitness."""
        where = f"query {quote(query)}"
        if not isinstance(query, (int, str)) or not isinstance(key, str) or not isinstance(generation, int) \
                or generation < 0:
            raise self._refused(f"the row of {where} has a query, key or generation of the wrong kind")
        try:
            record = json.loads(result)
            evaluation = Evaluation.from_dict(record)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, GptnasError) as error:
            raise self._refused(f"the result of {where} is not an evaluation ({one_line(error)[:120]})") from None
        if not _finite(record["fitness"]) or evaluation.status not in STATUSES:
            raise self._refused(f"{where} has fitness {quote(record['fitness'])} and status "
                                f"{quote(evaluation.status)}; fitness must be a finite number")
        return evaluation

    def _refused(self, why: str) -> GptnasError:
        return GptnasError(f"{self.path} is not a result store gptnas wrote: {why}; use the run's own "
                           "results.sqlite or a new --output_dir")

    def check_settings(self, settings: dict, where: Path) -> None:
        """Records the run's settings ({field: value}: every one but how the run executes) the first time; later,
        settings that differ (a hand-edited config.yaml) are refused, naming the first field that differs."""
        wanted = json.loads(json.dumps(settings))
        row = self.db.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
        if row is None:  # a new store, or one written before the settings were recorded
            with self._transaction():
                self.db.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(wanted, sort_keys=True),))
            return
        try:
            stored = json.loads(row[0])
            differ = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
        except (ValueError, TypeError, AttributeError):
            raise GptnasError(f"{self.path} records unreadable settings; use a new --output_dir") from None
        if differ:
            name = differ[0]
            raise GptnasError(f"{where}: {name} is {quote(wanted.get(name))} but the run was started with "
                              f"{quote(stored.get(name))}; a resumed run may change only how it executes: restore "
                              f"{name} or start a new run")

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def query_of(self, key: str) -> int | None:
        """The query number `key` was evaluated as; None when it was not."""
        row = self.db.execute("SELECT query FROM evaluations WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def get(self, key: str) -> Evaluation | None:
        return self._cache.get(key)

    def add(self, query: int, key: str, encoding: str, generation: int, evaluation: Evaluation) -> None:
        """Commits one evaluation (a transaction of its own, so a kill never leaves half a row).

        `query` numbers follow submission order, not completion order, so parallel runs
        number their queries exactly as a serial run does."""
        if key in self._cache:
            return
        with self._transaction():
            self.db.execute(
                "INSERT INTO evaluations (query, key, encoding, generation, result) VALUES (?, ?, ?, ?, ?)",
                (query, key, encoding, generation, json.dumps(evaluation.to_dict())),
            )
        self._cache[key] = evaluation
        self._generation[key] = min(self._generation.get(key, generation), generation)  # a rung may come first

    def add_rung(self, key: str, fidelity: float, encoding: str, generation: int, evaluation: Evaluation) -> None:
        """Commits one evaluation below the full schedule (`fidelity` < 1), like `add`."""
        if (key, fidelity) in self._rungs:
            return
        with self._transaction():
            self.db.execute("INSERT INTO rungs (key, fidelity, encoding, generation, result) VALUES (?, ?, ?, ?, ?)",
                            (key, fidelity, encoding, generation, json.dumps(evaluation.to_dict())))
        self._rungs[key, fidelity] = evaluation
        self._generation.setdefault(key, generation)

    def rung(self, key: str, fidelity: float) -> Evaluation | None:
        """The evaluation of `key` at `fidelity` (the full one at 1)."""
        return self._cache.get(key) if fidelity == 1 else self._rungs.get((key, fidelity))

    def rungs(self) -> list[tuple[str, float, str, int, Evaluation]]:
        """(key, fidelity, encoding, generation, evaluation) of every evaluation below the full schedule, in the
        order a run makes them: by generation, then fidelity."""
        rows = self.db.execute("SELECT key, fidelity, encoding, generation FROM rungs "
                               "ORDER BY generation, fidelity, rowid")
        return [(k, f, e, g, self._rungs[k, f]) for k, f, e, g in rows]

    def spent_through(self, generation: int, unit: str) -> float:
        """What the evaluations up to and including `generation` cost: in "query", one each at any fidelity; in
        "full" (full-training equivalents), each its fidelity, so a full-schedule one costs 1."""
        full = self.evaluated_through(generation)
        if not self._rungs:
            return full
        column = "COUNT(*)" if unit == "query" else "TOTAL(fidelity)"
        return full + self.db.execute(f"SELECT {column} FROM rungs WHERE generation <= ?", (generation,)).fetchone()[0]

    def add_proxy_score(self, key: str, score: float | None, seconds: float) -> None:
        """Commits the screening proxy's score of one architecture (None: the network failed it)."""
        if key in self.proxy_scores:
            return
        with self._transaction():
            self.db.execute("INSERT INTO proxy_scores (key, score, seconds) VALUES (?, ?, ?)", (key, score, seconds))
        self.proxy_scores[key] = score

    def screened(self) -> list[tuple[str, float | None, float]]:
        """(key, proxy score, seconds) of every architecture screened, resumes included, in scoring order."""
        return self.db.execute("SELECT key, score, seconds FROM proxy_scores ORDER BY rowid").fetchall()

    def fitness_in(self, key: str, generation: int, fidelity: float = 1.0) -> float | None:
        """The fitness of `key` at `fidelity` if it was first evaluated in `generation` (a failed network's is the
        worst), else None."""
        evaluation = self.rung(key, fidelity)
        if self._generation.get(key) != generation or evaluation is None:
            return None
        return evaluation.fitness if evaluation.ok else WORST_FITNESS

    def evaluated_before(self, key: str, generation: int) -> bool:
        """Whether `key` was evaluated (at any fidelity) in an earlier generation (what a resumed run must see as
        the uninterrupted one did, whatever the killed generation had already stored)."""
        return self._generation.get(key, generation) < generation

    def evaluated_in(self, generation: int) -> int:
        """How many unique architectures were first evaluated in `generation`."""
        return self.db.execute("SELECT COUNT(*) FROM evaluations WHERE generation = ?", (generation,)).fetchone()[0]

    def evaluated_through(self, generation: int) -> int:
        """How many unique architectures were evaluated up to and including `generation`."""
        return self.db.execute("SELECT COUNT(*) FROM evaluations WHERE generation <= ?", (generation,)).fetchone()[0]

    def history(self) -> list[tuple[int, str, str, int, Evaluation]]:
        """(query, key, encoding, generation, evaluation) in evaluation order."""
        rows = self.db.execute("SELECT query, key, encoding, generation FROM evaluations ORDER BY query")
        return [(q, k, e, g, self._cache[k]) for q, k, e, g in rows]

    def digest(self, through_generation: int) -> dict:
        """Rows, last query and a SHA-256 of every evaluation up to and including `through_generation`:
        what a checkpoint expects of its store."""
        rows = self.db.execute("SELECT query, key, result FROM evaluations WHERE generation <= ? ORDER BY query",
                               (through_generation,)).fetchall()
        last_query = rows[-1][0] if rows else 0
        rows += self.db.execute("SELECT key || '@' || fidelity, key, result FROM rungs WHERE generation <= ? "
                                "ORDER BY generation, fidelity, key", (through_generation,)).fetchall()
        sha = hashlib.sha256("".join(f"{q}\t{k}\t{r}\n" for q, k, r in rows).encode()).hexdigest()
        return {"rows": len(rows), "last_query": last_query, "sha256": sha}

    @staticmethod
    def holds_a_run(path: Path) -> bool:
        """Whether `path` is a store with its run's identity written (read-only: changes nothing)."""
        if not path.is_file() or path.stat().st_size == 0:
            return False
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] > 0
        except sqlite3.DatabaseError:
            return False

    @contextmanager
    def _transaction(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")  # the connection autocommits otherwise
            try:
                yield
            except BaseException:
                if self.db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL and "full" not in str(error):
                raise
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise GptnasError(f"the disk holding {self.path} is full ({error}); every evaluation committed before is "
                              f"kept: free some space, then continue with --resume {self.path.parent}") from None

    def close(self) -> None:
        self.db.close()
