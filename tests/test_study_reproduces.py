"""A fixed benchmark study reproduces, query for query, the study recorded in tests/data.

The recorded study was run with the shipped GPT (after its CIFAR-scale stage) and gpt-ga's learned
trust; any change to how a strategy draws, varies, reconstructs, adapts or counts
shows here as a different query sequence. A change that is meant to alter the
search regenerates the files (see `regenerate` below) and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gptnas.bench.__main__ import main

DATA = Path(__file__).parent / "data"
COMMAND = ["--spaces", "nas-bench-macro,nas-bench-201:cifar100", "--strategies", "gpt-ga,ga,regularized-evolution,random",
           "--seeds", "1", "--budget", "60", "--workers", "1", "--gpt", "shipped"]


def query_digests(study: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(study.glob("runs/*/*/seed_*/trajectory.json")):
        run = json.loads(path.read_text())
        digests[f"{run['benchmark']}/{run['strategy']}/{run['seed']}"] = hashlib.sha256("\n".join(run["keys"]).encode()).hexdigest()
    return digests


def regenerate(study: Path) -> None:
    """After `python -m gptnas.bench <COMMAND> --output_dir STUDY`: record STUDY as the reference."""
    (DATA / "golden_study_runs.csv").write_text((study / "runs.csv").read_text())
    (DATA / "golden_study_queries.json").write_text(json.dumps(query_digests(study), indent=1, sort_keys=True) + "\n")


def test_the_study_repeats_every_query_of_the_recorded_one(tmp_path, requires_table):
    requires_table("nas-bench-macro")
    requires_table("nas-bench-201:cifar100")
    assert main([*COMMAND, "--output_dir", str(tmp_path)]) == 0
    recorded = json.loads((DATA / "golden_study_queries.json").read_text())
    differ = sorted(name for name, digest in query_digests(tmp_path).items() if recorded.get(name) != digest)
    assert not differ, f"these runs queried other architectures than the recorded study: {differ}"
    assert len(recorded) == 8
    assert (tmp_path / "runs.csv").read_text() == (DATA / "golden_study_runs.csv").read_text()
    assert "`gpt-ga` learned how much to trust its GPT" in (tmp_path / "report.md").read_text()  # study.yaml: trust
