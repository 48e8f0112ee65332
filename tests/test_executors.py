"""A worker process that dies (a crash in native code, the out-of-memory killer) costs its candidate, not the search."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from gptnas.evaluators.base import Evaluation
from gptnas.search.executors import ProcessExecutor, SerialExecutor, ctrl_c_deferred, exit_description
from gptnas.spaces import get_space


class KillsItsWorker:
    """Evaluates to the length of the key, except that the doomed architectures kill their process."""

    num_classes, input_size = 10, 32

    def __init__(self, doomed: set[str]):
        self.doomed = doomed

    def evaluate(self, space, arch) -> Evaluation:
        if space.key(arch) in self.doomed:
            os.kill(os.getpid(), signal.SIGKILL)
        return Evaluation(float(len(space.key(arch))), None, 1, 1, 0.0)


def test_a_candidate_that_kills_its_worker_is_failed_and_the_others_are_evaluated():
    space = get_space("nas-bench-201")
    archs = [space.sample(random.Random(seed)) for seed in range(7)]
    doomed = {space.key(archs[1]), space.key(archs[4])}
    evaluator = KillsItsWorker(doomed)
    executor = ProcessExecutor(2)
    try:
        results = dict(executor.run(evaluator, "nas-bench-201", archs))
        again = dict(executor.run(evaluator, "nas-bench-201", archs[2:4]))  # the restarted pool serves on
    finally:
        executor.close()
    assert sorted(results) == list(range(7))
    for index, arch in enumerate(archs):
        if space.key(arch) in doomed:
            assert results[index].status == "failed" and not results[index].ok
            assert "SIGKILL" in results[index].reason and "alone" in results[index].reason
            assert results[index].params > 0  # its cost is still known
        else:
            assert results[index] == dict(SerialExecutor().run(evaluator, "nas-bench-201", [arch]))[0]
    assert [e.status for e in again.values()] == ["ok", "ok"]


def test_how_a_worker_ended_reads_as_words():
    assert exit_description(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert "out of memory" in exit_description(-signal.SIGKILL)
    assert exit_description(3) == "exited with code 3" and exit_description(None) == "ended"


def test_a_ctrl_c_inside_a_deferred_block_lands_when_the_block_is_done():
    """What the search builds under `ctrl_c_deferred` (its progress bar) is whole when the Ctrl-C lands."""
    done = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a search (a test worker may ignore it)
    try:
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the signal is handled here, and only noted
                done.append(True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done == [True]
