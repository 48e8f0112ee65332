"""Training data for the architecture GPT: corpus files -> token ids -> length-grouped batches.

One architecture per sequence (`<bos> tokens <eos>`), never packed, so the
model always sees a network from its first layer. Evaluation holds out whole
network families, so its accuracy measures what carries over to designs the
model has not seen.
"""

from __future__ import annotations

import gzip
import logging
import random
from pathlib import Path

import torch
from datasets import Dataset, concatenate_datasets, load_dataset

from gptnas.errors import GptnasError, one_line, quote

log = logging.getLogger(__name__)


def load_records(files: list[str]) -> Dataset:
    """Corpus JSONL files (plain or .gz) as one dataset with at least `text` and `family`.

    Records without text (null or blank) are skipped with a warning; a file with none left is a GptnasError."""
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise GptnasError(f"corpus file {missing[0]} does not exist; build the corpus with `python -m gptnas.corpus`")
    parts = []
    for f in files:
        if is_blank(f):  # datasets fails on an empty file with an empty message
            raise GptnasError(f"corpus file {f} is empty; it needs one JSON record per line with a 'text' field")
        try:
            part = load_dataset("json", data_files=str(f), split="train")
        except Exception as error:  # datasets raises many types for unreadable JSON
            raise GptnasError(f"cannot read corpus file {f}: {one_line(error)}") from None
        if "text" not in part.column_names:
            raise GptnasError(f"corpus file {f} has no 'text' field")
        usable = part.filter(lambda batch: [isinstance(t, str) and t.strip() != "" for t in batch["text"]], batched=True)
        if len(usable) == 0:
            raise GptnasError(f"corpus file {f} has no usable records: none has a non-empty 'text' string")
        if len(usable) < len(part):
            log.warning("corpus file %s: skipped %d of %d records without text", f, len(part) - len(usable), len(part))
        part = usable
        if "family" not in part.column_names:
            part = part.add_column("family", [""] * len(part))
        parts.append(part.select_columns([c for c in part.column_names if c in ("text", "family", "name", "weight")]))
    if len(parts) > 1:
        columns = set.intersection(*(set(p.column_names) for p in parts))
        parts = [p.select_columns(sorted(columns)) for p in parts]
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def is_blank(path: str | Path) -> bool:
    """True when a (possibly gzipped) file holds nothing but whitespace; reads only up to the first record."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(1 << 16):
                if chunk.strip():
                    return False
    except (OSError, EOFError):  # not gzip after all, or truncated: load_dataset says what is wrong
        return False
    return True


def split_families(records: Dataset, held_out: list[str]) -> tuple[Dataset, Dataset]:
    """(records of other families, records of the held-out families)."""
    held = set(held_out)
    train = records.filter(lambda r: r["family"] not in held)
    evaluation = records.filter(lambda r: r["family"] in held)
    return train, evaluation


def tokenize(records: Dataset, tokenizer, block_size: int, weight_column: str | None = None) -> Dataset:
    """Adds `input_ids` (`<bos> ... <eos>`, at most `block_size`) and a per-sequence `weight`."""
    eos = tokenizer.eos_token_id
    unk = tokenizer.unk_token_id

    def encode(batch):
        ids = tokenizer(batch["text"], truncation=True, max_length=block_size - 1)["input_ids"]
        for text, seq in zip(batch["text"], ids):
            if unk in seq:
                word = next(w for w in text.split() if tokenizer.convert_tokens_to_ids(w) == unk)
                raise GptnasError(f"token {quote(word)} of the corpus is not in the tokenizer; rebuild the tokenizer")
        out = {"input_ids": [seq + [eos] for seq in ids]}
        if weight_column:
            if weight_column not in batch:
                raise GptnasError(f"corpus has no column {quote(weight_column)} to weight sequences by")
            out["weight"] = [float(w) for w in batch[weight_column]]
        else:
            out["weight"] = [1.0] * len(ids)
        return out

    return records.map(encode, batched=True, remove_columns=records.column_names)


class LengthGroupedBatches:
    """Batches of similar length (little padding), in an order fixed by (seed, epoch).

    Shuffles, sorts within windows of 50 batches by length, then shuffles the
    batches: near-random batches at a fraction of the padding. Call
    `set_epoch` before each epoch; a resumed run gets the very same batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, drop_last: bool = False):
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        window = self.batch_size * 50
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def collate(pad_id: int):
    """Right-pads a batch; labels are the inputs with padding set to -100 (out of the loss)."""

    def collate_fn(rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            attention[i, : len(r["input_ids"])] = 1
        labels = input_ids.masked_fill(attention == 0, -100)
        weight = torch.tensor([float(r.get("weight", 1.0)) for r in rows])
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "weight": weight}

    return collate_fn
