"""Training the searched networks: short runs that score candidates, the long run that finishes the winner.

The GPT's own training is gptnas/gpt/. data.py and loop.py sit below the
evaluators (the training evaluator builds on them), so they do not import
gptnas.evaluators at module level; retrain.py sits above and may.
"""
