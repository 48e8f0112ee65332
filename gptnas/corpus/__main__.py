"""python -m gptnas.corpus: builds the ImageNet corpus (gptnas/corpus/build.py)."""

import sys

from gptnas.corpus.build import main

sys.exit(main())
