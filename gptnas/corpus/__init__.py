"""The training corpus of the architecture GPT, built from published networks (one command each):

    python -m gptnas.corpus --out data               # torchvision and timm ImageNet networks, traced (build.py)
    python -m gptnas.corpus.cifar --out data         # classic CIFAR designs written in the cifar space
    python -m gptnas.corpus.tokenizer --corpus data --out tokenizer   # the tokenizer over corpus and spaces

`quality.py` gives networks their quality and cost tokens from published results. Building needs the
`corpus` extra (torchvision, timm); running a search never does.
"""
