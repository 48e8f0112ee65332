"""Training the searched networks: short runs that score candidates, the long run that finishes the winner.

The GPT's own training is gptnas/gpt/. The evaluators build on this package
(data, device and loop sit below them and never import them).
"""
