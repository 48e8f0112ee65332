"""Which benchmark tables a GPT was trained on, so that no search uses a GPT that saw its own space's table.

Models record the tables they saw (`gptnas_tables_seen` in config.json); corpus records from a table carry
the source `table:<name>`. The benchmark harness refuses a GPT that saw a table of the space it searches.
"""

from __future__ import annotations

import json
from pathlib import Path

from gptnas.errors import GptnasError
from gptnas.files import read_jsonl
from gptnas.gpt.folder import default_model_dir, gpt_folder
from gptnas.tables import TABLES_BY_SPACE

TABLES_KEY = "gptnas_tables_seen"  # in a model's config.json: the benchmark tables it was trained on
TABLE_SOURCE = "table:"  # corpus records from a table have source "table:<table name>"


def tables_seen(model) -> list[str]:
    """The benchmark tables a model (its config) was trained on."""
    return list(getattr(model.config, TABLES_KEY, None) or [])


def tables_seen_by(name_or_path: str | Path | None) -> list[str]:
    """The benchmark tables a saved model (folder or Hub id; None: the shipped one) was trained on, from its
    config.json alone."""
    folder = gpt_folder(default_model_dir() if name_or_path is None else name_or_path)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise GptnasError(f"{folder / 'config.json'} is missing or corrupt; save the model again") from None
    return list(config.get(TABLES_KEY) or [])


def corpus_tables(files) -> set[str]:
    """The benchmark tables among the records of corpus files (their `source` field)."""
    sources = {record.get("source") or "" for path in files for record in read_jsonl(path)}
    return {source.removeprefix(TABLE_SOURCE) for source in sources if source.startswith(TABLE_SOURCE)}


def table_space(name: str) -> str:
    return next(space for space, by_dataset in TABLES_BY_SPACE.items() if name in by_dataset.values())


def leaked(tables: list[str], space: str) -> list[str]:
    """The tables of `space` among `tables`: what a GPT searching `space` must not have seen."""
    return [name for name in tables if table_space(name) == space]
