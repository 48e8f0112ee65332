"""Where evaluations run: in this process, in spawned worker processes, or on a Ray cluster.

All three take the same (evaluator, space name, architecture) jobs and yield
(job index, Evaluation) as evaluations finish; the search numbers and stores
results by job, so every executor gives the same run as the serial one.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Iterator

import torch

from gptnas.errors import GptnasError
from gptnas.evaluators.base import WORST_FITNESS, Evaluation, safe_cost
from gptnas.spaces import get_space

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def evaluate_job(evaluator, space_ref: str | dict, arch):
    return evaluator.evaluate(get_space(space_ref), arch)


class SerialExecutor:
    def run(self, evaluator, space_ref: str | dict, archs: list) -> Iterator[tuple[int, object]]:
        for index, arch in enumerate(archs):
            yield index, evaluate_job(evaluator, space_ref, arch)

    def close(self, finished: bool = False) -> None:
        pass


def die_with_parent(parent: int) -> None:
    """Makes this worker process end when `parent` (the process that started it) dies, however it dies
    (kill -9 included), so a killed search leaves no orphaned workers evaluating for nobody. The
    parent's pid is passed in: a worker still starting when its parent died is already re-parented."""
    if os.getppid() != parent:
        os._exit(1)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


@contextmanager
def workers_ignore_ctrl_c():
    """Worker processes started inside this block ignore Ctrl-C from their first instruction (an ignored
    signal stays ignored across exec, and Python then installs no KeyboardInterrupt handler), so a
    Ctrl-C while they start prints no traceback from them; the search handles it and stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def ctrl_c_deferred():
    """A Ctrl-C during this block raises when the block ends, so that what the block builds is whole (a
    progress bar cut short in its constructor prints a traceback from its destructor)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        signal.raise_signal(signal.SIGINT)  # now handled as it would have been


def tie_to_parent(parent: int) -> None:
    """A worker lives only as long as `parent` and leaves Ctrl-C to it (the parent stops the workers)."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_worker(parent: int, slots, threads: int, started) -> None:
    """Ties the worker to the search's life and gives it one GPU of its own (when there are GPUs), else
    its share of the CPU cores: small networks train faster as parallel processes than on shared threads.
    Counts itself in `started` once it is up."""
    tie_to_parent(parent)
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    else:
        torch.set_num_threads(threads)
    with started.get_lock():
        started.value += 1


WORKER_START_SECONDS = 120  # how long a search waits for its worker processes to start


class ProcessExecutor:
    """Evaluations in spawned worker processes. A worker that dies (a crash in native code, the system's
    out-of-memory killer) costs one candidate, not the search: the pool is restarted, the unfinished jobs
    run one at a time until the one that kills its worker alone is found and recorded as failed, and the
    rest go on in parallel."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool, self.processes = self._start_pool()

    def _start_pool(self) -> tuple[ProcessPoolExecutor, list]:
        context = multiprocessing.get_context("spawn")  # CUDA-safe, and the same on every OS
        slots = context.Queue()  # inherited by the workers at start; no manager process to outlive us
        gpus = torch.cuda.device_count()
        for worker in range(self.workers):
            slots.put(worker % gpus if gpus else None)
        started = context.Value("i", 0)
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                   initargs=(os.getpid(), slots, threads, started))
        # Every worker starts now, before the search, and is waited for: the pool starts one per submit while
        # none is idle, with Ctrl-C ignored meanwhile (workers_ignore_ctrl_c), and a worker stopped while it
        # starts prints a traceback. Started on the first evaluations, a Ctrl-C then was lost or left one.
        with workers_ignore_ctrl_c():
            probes = [pool.submit(os.getpid) for _ in range(self.workers)]
        deadline = time.monotonic() + WORKER_START_SECONDS
        died = lambda: any(probe.done() and probe.exception() for probe in probes)  # noqa: E731
        while started.value < self.workers and time.monotonic() < deadline and not died():
            time.sleep(0.01)
        if died():
            pool.shutdown(wait=False, cancel_futures=True)
            raise GptnasError("the worker processes died as they started; run with --workers 1 to see why")
        return pool, list((getattr(pool, "_processes", None) or {}).values())

    def run(self, evaluator, space_ref: str | dict, archs: list) -> Iterator[tuple[int, object]]:
        todo = dict(enumerate(archs))
        alone = False  # after a worker died: one job at a time, so that the next death names its job
        while todo:
            try:
                for index, evaluation in (self._one_by_one if alone else self._together)(evaluator, space_ref, todo):
                    del todo[index]
                    yield index, evaluation
            except BrokenProcessPool:
                how = self._restart()
                if alone:  # the first job left ran alone and killed its worker
                    index = next(iter(todo))
                    yield index, worker_died(evaluator, space_ref, todo.pop(index), how)
                alone = not alone

    def _together(self, evaluator, space_ref, todo: dict) -> Iterator[tuple[int, object]]:
        futures = {self.pool.submit(evaluate_job, evaluator, space_ref, arch): i for i, arch in todo.items()}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield futures[future], future.result()

    def _one_by_one(self, evaluator, space_ref, todo: dict) -> Iterator[tuple[int, object]]:
        for index, arch in list(todo.items()):
            yield index, self.pool.submit(evaluate_job, evaluator, space_ref, arch).result()

    def _restart(self) -> str:
        """A fresh pool in place of a broken one; how its dead worker ended (the pool terminates the others)."""
        self.close()
        for process in self.processes:
            process.join(timeout=10)
        codes = [p.exitcode for p in self.processes if p.exitcode not in (None, 0, -signal.SIGTERM)]
        self.pool, self.processes = self._start_pool()
        return exit_description(codes[0] if codes else None)

    def close(self, finished: bool = False) -> None:
        """After a finished search the idle workers exit normally (so they release what they hold, such as
        the semaphores of a dataset's loader); otherwise (Ctrl-C, an error) they are stopped now,
        evaluations in flight included: they would only be lost, as nothing stores them any more."""
        if finished:
            self.pool.shutdown(wait=True)
            return
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in self.processes:
            process.terminate()


def exit_description(code: int | None) -> str:
    """How a worker process ended, from its exit code (negative: the signal that ended it)."""
    if code is None:
        return "ended"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        return f"was killed by {name}" + (" (often the system, out of memory)" if -code == signal.SIGKILL else "")
    return f"exited with code {code}"


def worker_died(evaluator, space_ref: str | dict, arch, how: str):
    """The failed Evaluation of a candidate whose worker process died evaluating it alone."""
    space = get_space(space_ref)
    cost = safe_cost(space, arch, evaluator.num_classes, getattr(evaluator, "input_size", None))
    return Evaluation(WORST_FITNESS, None, cost["params"], cost["flops"], 0.0, "failed",
                      f"its worker process {how} while evaluating it alone")


class RayExecutor:
    def __init__(self, address: str | None, workers: int):
        try:
            import ray
        except ImportError:
            raise GptnasError("the ray executor needs Ray: pip install 'gptnas[ray]'") from None
        self.owned = not ray.is_initialized()  # a Ray this process had already joined stays its caller's
        if self.owned:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        gpus = 1 if torch.cuda.is_available() else 0
        self.remote = ray.remote(num_gpus=gpus)(evaluate_job)
        self.ray = ray

    def run(self, evaluator, space_ref: str | dict, archs: list) -> Iterator[tuple[int, object]]:
        evaluator_ref = self.ray.put(evaluator)
        refs = {self.remote.remote(evaluator_ref, space_ref, arch): i for i, arch in enumerate(archs)}
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], self.ray.get(ref)

    def close(self, finished: bool = False) -> None:
        """Leaves the Ray this executor joined: a local instance it started stops (its processes would
        otherwise outlive the search in a notebook or a test process); a cluster goes on without this driver."""
        if self.owned:
            self.ray.shutdown()


def make_executor(kind: str, workers: int, ray_address: str | None = None):
    if kind == "ray":
        return RayExecutor(ray_address, workers)
    if kind == "process" or workers > 1:
        return ProcessExecutor(workers)
    return SerialExecutor()
