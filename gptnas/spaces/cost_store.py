"""Segment costs kept on disk, so that a machine prices each block of a space once, not once per search.

Pricing a block (building it on the meta device and counting its parameters or multiply-accumulates) takes
5-7 ms here, and a search under a cost limit in the `cifar` space prices thousands of blocks at its first
rewrite (benchmarks/RESULTS.md, c14). The prices are kept in an SQLite file under the cache directory
($XDG_CACHE_HOME/gptnas/segment_costs, or ~/.cache/...), named by a fingerprint of the code that defines
them (the space's modules and torch's version): a change to that code starts a new file. SQLite keeps the
file whole when a search is killed and shares it between searches that run at once. A store that cannot
be read or written is a cache miss: the cost is computed as before, never guessed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SCHEMA = "CREATE TABLE IF NOT EXISTS costs (segment TEXT PRIMARY KEY, cost INTEGER NOT NULL)"


def store_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptnas" / "segment_costs"


class CostStore:
    """Costs by segment key (a string), for one space and one fingerprint of the code that prices them."""

    def __init__(self, name: str, sources: list[Path]):
        self._db: sqlite3.Connection | None = None
        self._pid: int | None = None  # a connection is not carried into a forked process
        self._broken = False
        digest = hashlib.sha256(torch.__version__.split("+")[0].encode())
        try:
            for source in sorted(sources):
                digest.update(source.read_bytes())
        except OSError:  # installed without its sources: nothing to fingerprint, so nothing is stored
            self._broken = True
        self.path = store_dir() / f"{name}-{digest.hexdigest()[:16]}.sqlite"

    def get(self, segment: str) -> int | None:
        row = self._run("SELECT cost FROM costs WHERE segment = ?", (segment,))
        return row[0] if row and isinstance(row[0], int) and row[0] >= 0 else None

    def put(self, segment: str, cost: int) -> None:
        self._run("INSERT OR IGNORE INTO costs VALUES (?, ?)", (segment, cost))

    def _run(self, sql: str, values: tuple):
        if self._broken:
            return None
        try:
            with closing(self._connection().execute(sql, values)) as cursor:
                return cursor.fetchone()
        except (sqlite3.Error, OSError) as error:
            self._broken = True  # once per process: the search goes on computing its costs
            log.warning("segment costs are computed, not cached: %s (%s)", self.path, error)
            return None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: a commit lost in a power cut is recomputed
            self._db.execute(SCHEMA)
            self._pid = os.getpid()
        return self._db
