"""Leave-space-out transfer: the GPT that searches a space learns quality from the tables of other spaces.

A benchmark table is a corpus: every canonical architecture of the table, written
in its space's language after the quality token of its fitness rank in that
table (`q4 space:nas-bench-201 ...`). The GPT used to search space S continues
training on the tables of every space but S, on any dataset: it may learn what
performs elsewhere, never here. Models record the tables they saw
(`gptnas_tables_seen` in config.json), and the benchmark harness refuses a GPT
that saw a table of the space it searches.

    python -m gptnas.gpt.transfer --space nas-bench-macro   # builds (or finds) the model, prints its folder

Models are cached under $XDG_CACHE_HOME/gptnas/transfer (or ~/.cache/...), one
folder per (space, base model, tables, recipe), written whole or not at all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from gptnas.errors import GptnasError, message
from gptnas.files import atomic_path, file_sha256, write_atomic, write_jsonl
from gptnas.gpt.folder import GPT_FILES, default_model_dir, gpt_folder
from gptnas.gpt.provenance import TABLE_SOURCE, table_space
from gptnas.gpt.train import TrainConfig, train
from gptnas.language.tokens import quality, quality_levels
from gptnas.spaces import get_space
from gptnas.tables import TABLES, load_table, on_disk

log = logging.getLogger(__name__)

# The recipe: a short continuation of the base model on the other spaces' tables.
RECIPE = {"max_train_steps": 150, "learning_rate": 1e-3, "per_device_train_batch_size": 16, "num_warmup_steps": 10,
          "seed": 0}


def transfer_tables(space: str) -> list[str]:
    """The tables on disk a GPT searching `space` may learn from: those of every other space."""
    return [name for name in sorted(TABLES) if table_space(name) != space and on_disk(name)]


def table_records(name: str) -> list[dict]:
    """Every canonical architecture of a table, under the quality token of its fitness rank there."""
    spec, table, space = TABLES[name], load_table(name), get_space(table_space(name))
    rows = [(key, float(row[spec.fitness])) for key, row in sorted(table.items())
            if space.key(space.from_key(key)) == key]
    levels = quality_levels([fitness for _, fitness in rows])
    return [{"name": key, "source": TABLE_SOURCE + name, "family": table_space(name),
             "text": f"{quality(level)} {space.encode(space.from_key(key))}"}
            for (key, _), level in zip(rows, levels)]


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptnas" / "transfer"


def model_for(space: str, base: str | Path | None = None, root: Path | None = None) -> Path | None:
    """The folder of the leave-space-out GPT for searching `space`, built on first use; None when no
    table of another space is on disk (the base model is then used as it is)."""
    tables = transfer_tables(space)
    if not tables:
        log.warning("no table of a space other than %s is on disk: %s searches with the base model", space, space)
        return None
    base_dir = gpt_folder(default_model_dir() if base is None else base)
    identity = {"space": space, "base": file_sha256(base_dir / GPT_FILES[1]), "recipe": RECIPE,
                "tables": {name: TABLES[name].sha256 for name in tables}}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    folder = (root or cache_root()) / f"{space}-{digest}"
    if (folder / GPT_FILES[1]).exists():
        return folder
    log.info("building the leave-space-out GPT for %s from %s (once; cached in %s)", space, ", ".join(tables), folder)
    with atomic_path(folder) as partial:
        partial.mkdir(parents=True)
        corpus = partial / "corpus.jsonl"
        write_jsonl([record for name in tables for record in table_records(name)], corpus)
        train_on(corpus, base_dir, partial / "run")
        for item in (partial / "run").iterdir():
            if item.is_file():
                shutil.move(item, partial / item.name)
        shutil.rmtree(partial / "run")
        corpus.unlink()
        write_atomic(partial / "transfer.json", json.dumps(identity, indent=2))
    return folder


def train_on(corpus: Path, base_dir: Path, output_dir: Path) -> None:
    config = TrainConfig(train_files=[str(corpus)], model_name_or_path=str(base_dir), output_dir=str(output_dir),
                         report_to="none", eval_steps=None, **RECIPE)
    train(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", required=True, help="the space the GPT will search")
    parser.add_argument("--base", default=None, help="base ArchGPT folder or Hub id (default: the shipped model)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        get_space(args.space)
        folder = model_for(args.space, args.base)
    except GptnasError as error:
        print(f"error: {message(error)}", file=sys.stderr)
        return 2
    print(folder or "no other table on disk: use the base model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
