"""Every built-in strategy, registered on import, in the order `--help` and the harness list them."""

from gptnas.search.strategies import get_strategy, strategies, strategy_names
from gptnas.search.strategies.gpt_genetic import GptGeneticAlgorithm, GptSettings
from gptnas.search.strategies.genetic import GeneticAlgorithm
from gptnas.search.strategies.random_search import RandomSearch
from gptnas.search.strategies.regularized_evolution import RegularizedEvolution
from gptnas.search.strategies.tpe import TreeParzen
from gptnas.search.strategies.dehb import Dehb

__all__ = ["Dehb", "GeneticAlgorithm", "GptGeneticAlgorithm", "GptSettings", "RandomSearch", "RegularizedEvolution",
           "TreeParzen", "get_strategy", "strategies", "strategy_names"]
