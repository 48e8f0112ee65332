"""Seeds for each step of a run, derived from the run's seed and the step alone, so a resumed run draws the same."""

from __future__ import annotations

import hashlib


def derived_seed(*parts) -> int:
    """A seed for one step of the run, independent of what ran before it (so resumes draw the same)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")
