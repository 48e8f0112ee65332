"""The cost range of everything a grammar state can still become, so that sampling stays within a budget.

In a space whose networks' costs add up over the segments of their spelling (a stem, blocks, a head in
sequence: parameters, and multiply-accumulates at a given input size), the grammar gives exact bounds: the
cheapest and the dearest completion of a context is a shortest and a longest path through the segment
automaton; of a node inside a segment's trie, the best of the segments below it, each followed by its
context's completion; of a state, its segments so far plus its node's bound. A sampler that allows only the
tokens after which some completion still lies in [floor, cap] writes, in one draw, a network whose cost lies
there.

When one segment of a network is rewritten in place (GPT reconstruction), what follows it is fixed: a
`Tail` names the segment and the payloads after it, and the bounds are those of the segment followed by
exactly that tail, priced in the context the new segment leaves.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Hashable, NamedTuple

from gptnas.language.grammar import Grammar, GrammarState, Trie
from gptnas.language.tokens import EOS

Bounds = tuple[float, float]  # (lowest, highest) cost; (inf, -inf) where nothing completes


class Tail(NamedTuple):
    """A rewrite of payload number `index` (the space tag is 0) followed by the fixed `payloads`."""

    index: int
    payloads: tuple


class Budget(NamedTuple):
    """Sample only networks whose cost under `bounds` lies in [floor, cap] (after `tail`, when rewriting)."""

    bounds: CostBounds
    floor: float
    cap: float
    tail: Tail | None = None


class CostBounds:
    """Cost bounds of the completions of grammar states, from an additive cost per segment."""

    def __init__(self, grammar: Grammar, segment_cost: Callable[[Hashable, Any], int]):
        self.grammar = grammar
        self.segment_cost = segment_cost  # (context, payload) -> the segment's cost
        self._node_bounds: dict[tuple[Hashable, int], Bounds] = {}
        self._payloads_below: dict[int, tuple] = {}
        self._spent: dict[tuple, tuple[int, Hashable]] = {(): (0, grammar.language.start_context())}
        self._tail_costs: dict[tuple[Hashable, tuple], int] = {}

    def of(self, state: GrammarState, tail: Tail | None = None) -> Bounds:
        """The lowest and highest cost of an architecture that continues `state` (then `tail`)."""
        lows, highs = zip(*(self._thread(t, tail) for t in state.threads))
        return min(lows), max(highs)

    def within(self, state: GrammarState, allowed: frozenset[str], floor: float, cap: float,
               tail: Tail | None = None) -> frozenset[str]:
        """The tokens of `allowed` after which a network costing between `floor` and `cap` remains. Where none
        does (the window falls between two networks), those after which one at most `cap` remains; where
        none does either (a tail too dear for any rewrite), all of `allowed`."""
        low, high = self.of(state, tail)
        if floor <= low and high <= cap:
            return allowed
        bounds = {token: self._after(state, token, tail) for token in allowed}
        keep = frozenset(t for t, (lo, hi) in bounds.items() if lo <= cap and hi >= floor)
        return keep or frozenset(t for t, (lo, _) in bounds.items() if lo <= cap) or allowed

    def _after(self, state: GrammarState, token: str, tail: Tail | None) -> Bounds:
        if token == EOS:
            cost = self._finished(self.grammar.finish(state), tail)
            return cost, cost
        return self.of(self.grammar.step(state, token), tail)

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

    def _finished(self, payloads: tuple, tail: Tail | None) -> int:
        """The cost of a network whose segments are `payloads` (the rewritten one and then `tail`, with a tail)."""
        if tail is None:
            return self.spent(payloads)
        cost, context = self._spent_and_context(tuple(payloads[: tail.index + 1]))
        return cost + self._tail_cost(context, tail.payloads)

    def _tail_cost(self, context: Hashable, payloads: tuple) -> int:
        """The cost of `payloads` written from `context` on; infinite where the network has already ended."""
        key = (context, payloads)
        cost = self._tail_costs.get(key)
        if cost is None:
            cost = 0
            for payload in payloads:
                if not self.grammar.trie(context).children:
                    cost = math.inf
                    break
                cost += self.segment_cost(context, payload)
                context = self.grammar.language.advance(context, payload)
            self._tail_costs[key] = cost
        return cost

    def _thread(self, thread, tail: Tail | None) -> Bounds:
        if tail is not None and len(thread.payloads) > tail.index:  # the rewrite is written: the cost is known
            cost = self._finished(thread.payloads, tail)
            return cost, cost
        if tail is not None and len(thread.payloads) < tail.index:  # still in the prefix: the tokens after it tell
            return 0, math.inf
        spent = self.spent(thread.payloads)
        if tail is None:
            low, high = self.node(thread.context, thread.node)
        else:
            values = [self.segment_cost(thread.context, p) + self._tail_cost(
                self.grammar.language.advance(thread.context, p), tail.payloads) for p in self._below(thread.node)]
            low, high = min(values, default=math.inf), max(values, default=-math.inf)
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


def allowed_within(state: GrammarState, allowed: frozenset[str], budgets: list[Budget]) -> frozenset[str]:
    """`allowed` less the tokens that leave no network within each budget (the budgets applied in turn; one
    that would leave nothing gives way)."""
    for budget in budgets:
        allowed = budget.bounds.within(state, allowed, budget.floor, budget.cap, budget.tail) or allowed
    return allowed
