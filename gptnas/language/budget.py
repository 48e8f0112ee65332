"""The cost range of everything a grammar state can still become, so that sampling stays within a budget.

In a space whose networks' parameters add up over the segments of their spelling (a stem, blocks, a
head in sequence), the grammar gives exact bounds: the cheapest and the dearest completion of a
context is a shortest and a longest path through the segment automaton; of a node inside a segment's
trie, the best of the segments below it, each followed by its context's completion; of a state, its
segments so far plus its node's bound. A sampler that allows only the tokens after which some completion
still lies in [floor, cap] writes, in one draw, a network whose cost lies there.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Hashable

from gptnas.language.grammar import Grammar, GrammarState, Trie
from gptnas.language.tokens import EOS

Bounds = tuple[float, float]  # (lowest, highest) cost; (inf, -inf) where nothing completes


class CostBounds:
    """Cost bounds of the completions of grammar states, from an additive cost per segment."""

    def __init__(self, grammar: Grammar, segment_cost: Callable[[Hashable, Any], int]):
        self.grammar = grammar
        self.segment_cost = segment_cost  # (context, payload) -> the segment's cost
        self._node_bounds: dict[tuple[Hashable, int], Bounds] = {}
        self._payloads_below: dict[int, tuple] = {}
        self._spent: dict[tuple, tuple[int, Hashable]] = {(): (0, grammar.language.start_context())}

    def of(self, state: GrammarState) -> Bounds:
        """The lowest and highest cost of an architecture that continues `state`."""
        lows, highs = zip(*(self._thread(t) for t in state.threads))
        return min(lows), max(highs)

    def within(self, state: GrammarState, allowed: frozenset[str], floor: float, cap: float) -> frozenset[str]:
        """The tokens of `allowed` after which a completion costing between `floor` and `cap` remains. Where
        none does (the window falls between two networks), those after which one at most `cap` remains."""
        low, high = self.of(state)
        if floor <= low and high <= cap:
            return allowed
        bounds = {token: self._after(state, token) for token in allowed}
        keep = frozenset(t for t, (lo, hi) in bounds.items() if lo <= cap and hi >= floor)
        return keep or frozenset(t for t, (lo, _) in bounds.items() if lo <= cap) or allowed

    def _after(self, state: GrammarState, token: str) -> Bounds:
        if token == EOS:
            cost = self.spent(self.grammar.finish(state))
            return cost, cost
        return self.of(self.grammar.step(state, token))

    def spent(self, payloads: tuple) -> int:
        """The cost of the complete segments `payloads` (from the first, the space tag)."""
        return self._spent_and_context(tuple(payloads))[0]

    def _spent_and_context(self, payloads: tuple) -> tuple[int, Hashable]:
        known = self._spent.get(payloads)
        if known is None:
            cost, context = self._spent_and_context(payloads[:-1])
            known = (cost + self.segment_cost(context, payloads[-1]),
                     self.grammar.language.advance(context, payloads[-1]))
            self._spent[payloads] = known
        return known

    def _thread(self, thread) -> Bounds:
        spent = self.spent(thread.payloads)
        low, high = self.node(thread.context, thread.node)
        return spent + low, spent + high

    def node(self, context: Hashable, node: Trie) -> Bounds:
        """Bounds of the rest of an architecture whose current segment (in `context`) is at `node` of its trie."""
        key = (context, id(node))  # tries live as long as the grammar, so their ids stay theirs
        bounds = self._node_bounds.get(key)
        if bounds is None:
            values = [self._segment_and_rest(context, p) for p in self._below(node)]
            if node is self.grammar.trie(context) and self.grammar.language.is_complete(context):
                values.append((0, 0))
            bounds = (min((v[0] for v in values), default=math.inf), max((v[1] for v in values), default=-math.inf))
            self._node_bounds[key] = bounds
        return bounds

    def completion(self, context: Hashable) -> Bounds:
        """Bounds of everything written from the start of a segment in `context` to the end."""
        return self.node(context, self.grammar.trie(context))

    def _segment_and_rest(self, context: Hashable, payload: Any) -> Bounds:
        cost = self.segment_cost(context, payload)
        low, high = self.completion(self.grammar.language.advance(context, payload))
        return cost + low, cost + high

    def _below(self, node: Trie) -> tuple:
        """The payloads of the segments that end at or below `node`."""
        payloads = self._payloads_below.get(id(node))
        if payloads is None:
            payloads = ((node.payload,) if node.terminal else ()) + tuple(
                p for child in node.children.values() for p in self._below(child))
            self._payloads_below[id(node)] = payloads
        return payloads
