"""The word-level tokenizer of the architecture language.

Its vocabulary is every token any search space can write, every token of the
corpus and the conditioning tokens (quality, cost), sorted, after the special tokens, so rebuilding from the same
corpus gives the same ids. Encoding adds `<bos>` in front; training appends
`<eos>` itself, so a prefix fed to generation stays open-ended.

Rebuild:  python -m gptnas.corpus.tokenizer --corpus data --out tokenizer
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from gptnas.errors import GptnasError, message
from gptnas.files import read_jsonl
from gptnas.language.tokens import BOS, CONDITION_TOKENS, EOS, PAD, SPECIAL_TOKENS, UNK
from gptnas.spaces import get_space, space_names

log = logging.getLogger(__name__)

MODEL_MAX_LENGTH = 4096  # tokens per architecture, <bos> and <eos> included


def corpus_files(corpus_dir: Path) -> list[Path]:
    return sorted(p for p in Path(corpus_dir).iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))


def corpus_words(corpus_dir: Path) -> set[str]:
    return {word for path in corpus_files(corpus_dir) for record in read_jsonl(path) for word in record["text"].split()}


def space_words() -> set[str]:
    return set().union(*(get_space(name).vocabulary() for name in space_names()))


def build_tokenizer(words: set[str], max_length: int = MODEL_MAX_LENGTH) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *sorted(words - set(SPECIAL_TOKENS))])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],
        padding_side="right",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("data"), help="folder of corpus JSONL files")
    parser.add_argument("--out", type=Path, default=Path("tokenizer"), help="where to save the tokenizer")
    parser.add_argument("--max_length", type=int, default=MODEL_MAX_LENGTH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if not args.corpus.is_dir() or not corpus_files(args.corpus):
            raise GptnasError(f"no corpus JSONL files in {args.corpus}; build them with `python -m gptnas.corpus`")
        words = corpus_words(args.corpus) | space_words() | set(CONDITION_TOKENS)
        tokenizer = build_tokenizer(words, args.max_length)
        tokenizer.save_pretrained(args.out)
    except GptnasError as error:
        print(f"error: {message(error)}", file=sys.stderr)
        return 2
    log.info("saved a %d-token vocabulary to %s", len(tokenizer), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
