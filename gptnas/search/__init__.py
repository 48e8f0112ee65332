"""Search strategies: the DEAP evolution loop, GPT reconstruction and the baselines."""
