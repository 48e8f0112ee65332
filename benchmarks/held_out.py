"""How well GPTs predict the layers of held-out families, family by family.

    python benchmarks/held_out.py --gpt PATH_BEFORE --gpt PATH_AFTER [--config configs/cifar_scale.yaml]

Reads the held-out families and the files they come from (`eval_families`, `eval_files`) from a
training config, and reports for each family and GPT the next-token loss and top-1 accuracy over
the networks' layer tokens. The conditioning tokens and the space tag are dropped, and so is any
layer token one of the GPTs does not know (counted in the table), so GPTs with different
vocabularies (an older one without today's cost tokens, tags or pooling sizes) are scored on the
same tokens.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import yaml
from datasets import Dataset, disable_progress_bars
from torch.utils.data import DataLoader

from gptnas.files import read_jsonl
from gptnas.gpt import data
from gptnas.gpt.folder import load_pretrained
from gptnas.gpt.loss import held_out_metrics
from gptnas.language import tokens


def layers(text: str, known: set[str]) -> list[str]:
    """The text's layer tokens that every GPT knows (no conditioning tokens, no space tag)."""
    return [t for t in tokens.split_condition(text.split())[1][1:] if t in known]


def family_metrics(model, tokenizer, records: list[dict], known: set[str], block_size: int) -> dict[str, dict]:
    by_family = defaultdict(list)
    for r in records:
        by_family[r["family"]].append({"text": " ".join(layers(r["text"], known))})
    out = {}
    for family, rows in sorted(by_family.items()):
        encoded = data.tokenize(Dataset.from_list(rows), tokenizer, block_size)
        loader = DataLoader(encoded, batch_size=8, collate_fn=data.collate(tokenizer.pad_token_id))
        out[family] = {"networks": len(rows), **held_out_metrics(model, loader)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpt", action="append", required=True, help="a GPT folder (repeat to compare)")
    parser.add_argument("--config", default="configs/cifar_scale.yaml", help="training config naming the held-out families")
    args = parser.parse_args()
    disable_progress_bars()
    config = yaml.safe_load(open(args.config))
    held = set(config["eval_families"])
    records = [r for path in config["eval_files"] for r in read_jsonl(path) if r.get("family") in held]
    loaded = {gpt: load_pretrained(gpt) for gpt in args.gpt}
    known = set.intersection(*(set(tokenizer.get_vocab()) for _, tokenizer in loaded.values()))
    block_size = config.get("block_size", 2048)
    results = {gpt: family_metrics(*loaded[gpt], records, known, block_size) for gpt in args.gpt}
    print("| family | networks | layer tokens (dropped: unknown to a GPT) | "
          + " | ".join(f"loss / top-1 (`{gpt}`)" for gpt in args.gpt) + " |")
    print("|---|---:|---|" + "---|" * len(args.gpt))
    for family in sorted({f for metrics in results.values() for f in metrics}):
        mine = [r for r in records if r["family"] == family]
        total = sum(len(tokens.split_condition(r["text"].split())[1]) - 1 for r in mine)
        kept = sum(len(layers(r["text"], known)) for r in mine)
        cells = [f"{results[g][family]['loss']:.3f} / {100 * results[g][family]['top1_accuracy']:.1f} %"
                 for g in args.gpt]
        print(f"| {family} | {len(mine)} | {kept} ({total - kept}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
