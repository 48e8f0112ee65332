"""Exact grammars for search spaces, as automata over tokens.

A space writes an architecture as a sequence of *segments* (a stem, a block,
a stage, a head ...). Which segments may come next depends on a small hashable
context (input width, blocks so far, ...). The segments allowed in a context
are kept in a trie; walking tries segment after segment is an automaton, so `allowed` is exact both ways: every token it offers completes to
a valid architecture, and every valid architecture's tokens are offered.

Generation steps one token at a time through `GrammarState`s, so a batch of
sequences costs a dictionary look-up or two per token (tries are cached per
context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Protocol

from gptnas.errors import GptnasError, quote
from gptnas.language.tokens import EOS


class Trie:
    """Token sequences with a payload at the end of each (the gene values they encode)."""

    __slots__ = ("children", "payload", "terminal", "_allowed")

    def __init__(self) -> None:
        self.children: dict[str, Trie] = {}
        self.payload: Any = None
        self.terminal = False
        self._allowed: frozenset[str] | None = None

    def add(self, tokens: Iterable[str], payload: Any) -> None:
        node = self
        for token in tokens:
            node = node.children.setdefault(token, Trie())
        if node.terminal and node.payload != payload:
            raise ValueError(f"two segments share one spelling: {node.payload!r} and {payload!r}")
        if node is self:
            raise ValueError("a segment must have at least one token")
        node.terminal, node.payload = True, payload

    def nodes(self):
        """Every node of the trie, this one first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    def tokens(self) -> set[str]:
        """Every token on a path of the trie."""
        return {token for node in self.nodes() for token in node.children}

    def payloads(self) -> list:
        """The payload of every segment in the trie."""
        return [node.payload for node in self.nodes() if node.terminal]


class SegmentLanguage(Protocol):
    """What a space tells the grammar."""

    def start_context(self) -> Hashable: ...

    def segments(self, context: Hashable) -> Trie: ...

    def advance(self, context: Hashable, payload: Any) -> Hashable: ...

    def is_complete(self, context: Hashable) -> bool: ...


@dataclass(frozen=True)
class _Thread:
    """One reading of the tokens so far: in `context`, at `node` of its segment trie."""

    context: Hashable
    node: Trie
    payloads: tuple = ()


@dataclass(frozen=True)
class GrammarState:
    """All readings of a prefix that can still complete.

    A segment may end where a longer one goes on with the same tokens as the
    next segment begins (an inverted-residual stage of one block, or of two);
    such readings part within a few tokens, so the set stays tiny.
    """

    threads: tuple[_Thread, ...]


class Grammar:
    """An automaton over tokens built lazily from a `SegmentLanguage`."""

    def __init__(self, language: SegmentLanguage, name: str, vocabulary: frozenset[str] | None = None):
        self.language = language
        self.name = name
        self.vocabulary = vocabulary
        self._tries: dict[Hashable, Trie] = {}

    def trie(self, context: Hashable) -> Trie:
        trie = self._tries.get(context)
        if trie is None:
            trie = self._tries[context] = self.language.segments(context)
        return trie

    def start(self) -> GrammarState:
        context = self.language.start_context()
        return GrammarState((_Thread(context, self.trie(context)),))

    def _next_segment(self, thread: _Thread) -> _Thread | None:
        """The thread at the start of the next segment, if the current one can end here."""
        if not thread.node.terminal:
            return None
        context = self.language.advance(thread.context, thread.node.payload)
        return _Thread(context, self.trie(context), thread.payloads + (thread.node.payload,))

    def _allowed(self, thread: _Thread) -> frozenset[str]:
        node = thread.node
        if node._allowed is not None:
            return node._allowed
        tokens = set(node.children)
        nxt = self._next_segment(thread)
        if nxt is not None:
            tokens |= self._allowed(nxt)
        root = node is self.trie(thread.context)
        if root and self.language.is_complete(thread.context):
            tokens.add(EOS)
        result = frozenset(tokens)
        # Inner non-terminal nodes depend on nothing but their children; a root or a
        # segment end also depends on the context, which may share this trie.
        if not root and not node.terminal:
            node._allowed = result
        return result

    def allowed(self, state: GrammarState) -> frozenset[str]:
        """Exactly the tokens that may follow `state` (EOS when the architecture may end)."""
        if len(state.threads) == 1:
            return self._allowed(state.threads[0])
        return frozenset().union(*(self._allowed(t) for t in state.threads))

    def _step(self, thread: _Thread, token: str):
        child = thread.node.children.get(token)
        if child is not None:
            yield _Thread(thread.context, child, thread.payloads)
        nxt = self._next_segment(thread)
        if nxt is not None:
            yield from self._step(nxt, token)

    def step(self, state: GrammarState, token: str) -> GrammarState | None:
        """The state after `token`, or None if the grammar does not allow it."""
        threads = tuple(t for thread in state.threads for t in self._step(thread, token))
        return GrammarState(threads) if threads else None

    def _finish(self, thread: _Thread) -> tuple | None:
        while True:
            if thread.node is self.trie(thread.context) and self.language.is_complete(thread.context):
                return thread.payloads
            thread = self._next_segment(thread)
            if thread is None:
                return None

    def finish(self, state: GrammarState) -> tuple | None:
        """The payloads of the complete parse, or None if the sequence cannot end here."""
        parses = {p for p in (self._finish(t) for t in state.threads) if p is not None}
        if len(parses) > 1:
            raise AssertionError(f"space {self.name}: one token sequence spells {len(parses)} architectures")
        return parses.pop() if parses else None
    def parse(self, tokens: list[str]) -> tuple:
        """The segment payloads of a complete token sequence; GptnasError naming the bad token."""
        state = self.start()
        for position, token in enumerate(tokens):
            nxt = self.step(state, token)
            if nxt is None:
                if self.vocabulary is not None and token not in self.vocabulary:
                    raise GptnasError(f"unknown token {quote(token)} at position {position} (space {self.name})")
                expected = sorted(self.allowed(state))
                hint = ", ".join(expected[:8]) + (" ..." if len(expected) > 8 else "")
                raise GptnasError(
                    f"token {quote(token)} at position {position} is not allowed in space {self.name} "
                    f"(expected one of: {hint})"
                )
            state = nxt
        payloads = self.finish(state)
        if payloads is None:
            expected = sorted(self.allowed(state) - {EOS})
            hint = ", ".join(expected[:8]) + (" ..." if len(expected) > 8 else "")
            raise GptnasError(
                f"architecture for space {self.name} is incomplete after {len(tokens)} tokens "
                f"(next would be one of: {hint})"
            )
        return payloads

    def allowed_next(self, prefix: list[str]) -> frozenset[str]:
        state = self.start()
        for position, token in enumerate(prefix):
            state = self.step(state, token)
            if state is None:
                raise GptnasError(f"prefix token {quote(token)} at position {position} is not allowed in space {self.name}")
        return self.allowed(state)
