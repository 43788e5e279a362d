"""Running a method's ``fit`` in a persistent child process, under a wall-time and a memory limit.

The process that scores (the *parent*) builds each job's data, gives the method exactly the
:class:`~sbbench.methods.base.TrainContext` that :func:`sbbench.runner.train_context` built for
its track (sent with cloudpickle, so the backbone factory travels as that same closure), and
receives the trained module back. The test split never leaves the parent, which checks and
evaluates the model: :func:`sbbench.runner.run_job` with an :class:`IsolatedFit` as its fitter.

Children are started once (``python -c`` with a private pair of pipes) and reused by every later
job that needs the same limits, so interpreter and torch start-up are paid once per worker,
not once per job. A child

* runs under ``RLIMIT_AS`` (soft and hard limit, so the method cannot raise it) when it trains
  on the CPU, and reports an allocation failure as "memory limit exceeded" (then retires);
* ignores SIGINT (the parent decides when it stops) and exits by itself when its parent dies,
  even when the parent was killed with SIGKILL;
* follows the parent's ``sys.path`` and working directory for each job, so it finds the same
  methods; a reused child that no longer finds the same method code is replaced and the job
  retried once on a fresh child.

The parent kills a child that overruns the time limit (SIGKILL), records "time limit exceeded
after N s" and starts a fresh child for the next job; a child that dies is recorded with its
exit code or signal. Each child leads its own process group (``start_new_session``): a kill
(time limit, :meth:`IsolatedFit.stop`) and the closing of a child kill the whole group, and after
every job the processes that ``fit`` started and left running are killed, so none outlives its job.
``docs/isolation.md`` states what this guarantees and what it does not.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import os
import pickle
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import torch
from torch import nn

from sbbench.methods.base import Method, TrainContext
from sbbench.methods.registry import resolve_method
from sbbench.runner import FitFailure, describe_error
from sbbench.suite import Suite
from sbbench.tasks import Task

START_SECONDS = 600.0
"""How long a fresh child may take to import torch and sbbench before it counts as failed."""

_CHILD_COMMAND = "from sbbench.isolation import serve; serve()"
_GB = 1024**3
_MEMORY_MARKERS = ("can't allocate memory", "cannot allocate memory", "out of memory", "bad_alloc")


@dataclass(frozen=True)
class Limits:
    """What one job's ``fit`` may use: seconds of wall time and GB of address space (``None``: unlimited)."""

    seconds: float
    memory_gb: float | None

    @classmethod
    def of(cls, suite: Suite) -> Limits:
        """The limits a suite sets."""
        return cls(seconds=suite.fit_seconds_limit, memory_gb=suite.fit_memory_limit_gb)


@dataclass(frozen=True)
class _Config:
    """How a child is started; children are reused only by jobs with the same configuration."""

    memory_bytes: int  # 0: no address-space limit
    threads: int


@dataclass(frozen=True)
class _Request:
    """One job, as the child receives it."""

    method_ref: str
    code_hash: str
    hparams: dict[str, Any]
    context: TrainContext
    sys_path: list[str]
    cwd: str


class _CompactPickler(cloudpickle.CloudPickler):
    """cloudpickle, except that a tensor viewing part of a larger storage is sent as a copy of that part.

    Pickling a view sends its whole storage, so a training split sliced from a tensor that also
    holds the test split would carry the test rows along, unseen; this pickler never does.
    """

    def reducer_override(self, obj: Any) -> Any:
        if (isinstance(obj, torch.Tensor) and obj.layout == torch.strided
                and obj.untyped_storage().nbytes() > obj.numel() * obj.element_size()):
            return obj.clone().__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        return super().reducer_override(obj)


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _CompactPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class _StaleWorker(Exception):
    """A reused child could not load the expected method code; the job is retried on a fresh child."""


def _quiet(message: str) -> None:
    """The log callback a context carries in transit (the child installs its own)."""


# --- the parent side ----------------------------------------------------------------------------


SLOW_MALLOC_SETTINGS = ("MALLOC_TRIM_THRESHOLD_",)
"""Environment variables a fit child does not inherit. Dask's nanny sets a 64 KiB trim threshold
in its workers, which fixes glibc's mmap threshold too, so every tensor above 128 KiB is mapped
and unmapped afresh: about 25% more CPU time for a small FCN's forward passes on this machine."""


def _child_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in SLOW_MALLOC_SETTINGS}


class _Worker:
    """One child process and the two pipes to it."""

    def __init__(self, config: _Config) -> None:
        self.config = config
        self.broken = False
        self.served = 0
        self._ready = False
        to_child, from_parent = os.pipe()
        from_child, to_parent = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_COMMAND, str(to_child), str(to_parent), str(os.getpid()),
                 str(config.memory_bytes), str(config.threads)],
                pass_fds=(to_child, to_parent), stdin=subprocess.DEVNULL, env=_child_environment(),
                start_new_session=True)
        finally:
            os.close(to_child)
            os.close(to_parent)
        self._outbox = Connection(from_parent, readable=False)
        self._inbox = Connection(from_child, writable=False)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def fit(self, payload: bytes, seconds: float, log: Callable[[str], None]) -> bytes:
        """Send one pickled request and return the pickled model; raise :class:`FitFailure` otherwise."""
        self._await_ready()
        try:
            self._outbox.send_bytes(payload)
        except OSError:
            raise self._death() from None
        self.served += 1
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._inbox.poll(remaining):
                self.kill()
                self._close_pipes()
                raise FitFailure(f"time limit exceeded after {seconds:g} s (the suite's fit_seconds_limit)")
            message = self._receive()
            if message[0] == "log":
                log(message[1])
            elif message[0] == "model":
                return message[1]
            elif message[0] == "stale":
                self.broken = True
                raise _StaleWorker(message[1])
            else:
                _, reason, retire = message
                self.broken = retire
                raise FitFailure(reason)

    def kill(self) -> None:
        """SIGKILL the child and every process of its group (safe from another thread: the pipes stay open
        for their owner)."""
        self.broken = True
        self._kill_group()
        if self.alive:
            self.process.kill()
        self.process.wait()
        self._kill_group()

    def close(self) -> None:
        """Ask the child to exit (end of input), killing it if it does not within a few seconds; then kill
        whatever its ``fit`` started that is still running (the child's process group)."""
        self.broken = True
        self._close_pipes()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        self._kill_group()

    def kill_strays(self) -> None:
        """SIGKILL every process of the child's group but the child: what a finished ``fit`` left running."""
        if not self.alive:
            self._kill_group()
            return
        for pid in _group_members(self.process.pid):
            if pid != self.process.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def _kill_group(self) -> None:
        """SIGKILL the child's process group (the child leads it: ``start_new_session``)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def _await_ready(self) -> None:
        if self._ready:
            return
        if not self._inbox.poll(START_SECONDS):
            self.kill()
            self._close_pipes()
            raise FitFailure(f"the fit process did not start within {START_SECONDS:g} s")
        if self._receive() != ("ready",):
            self.kill()
            self._close_pipes()
            raise FitFailure("the fit process sent an unexpected first message")
        self._ready = True

    def _receive(self) -> tuple:
        try:
            return self._inbox.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            raise self._death() from None

    def _death(self) -> FitFailure:
        self.broken = True
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            self._close_pipes()
            return FitFailure("the fit process stopped answering and was killed")
        self._close_pipes()
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
            return FitFailure(f"the fit process was killed by {name}{hint}")
        return FitFailure(f"the fit process exited with code {code}")

    def _close_pipes(self) -> None:
        self._outbox.close()
        self._inbox.close()


def _group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (read from ``/proc``; empty where there is none)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(int(name))
    return members


class _Pool:
    """Idle children of this process, by configuration, reused across jobs and scores."""

    def __init__(self) -> None:
        self._idle: dict[_Config, list[_Worker]] = {}
        self._lock = threading.Lock()

    def take(self, config: _Config) -> _Worker:
        """An idle live child of ``config``, or a freshly started one."""
        with self._lock:
            idle = self._idle.get(config, [])
            while idle:
                worker = idle.pop()
                if worker.alive:
                    return worker
                worker.close()
        return _Worker(config)

    def give_back(self, worker: _Worker) -> None:
        """Keep a healthy child for the next job; close a broken one."""
        if worker.broken or not worker.alive:
            worker.close()
            return
        with self._lock:
            self._idle.setdefault(worker.config, []).append(worker)

    def close(self) -> None:
        """Stop every idle child (at interpreter exit)."""
        with self._lock:
            workers = [w for idle in self._idle.values() for w in idle]
            self._idle.clear()
        for worker in workers:
            worker.close()


_POOL = _Pool()
atexit.register(_POOL.close)


@dataclass
class IsolatedFit:
    """A :data:`sbbench.runner.Fitter` that trains in a child process of this process's pool.

    Attributes:
        method_ref: how the child finds the method (registry name or submission folder).
        code_hash: the method code the parent resolved; a child that finds other code refuses.
        limits: the suite's time and memory limits.
        threads: torch threads of the child (``None``: this process's current setting).
        slots: bounds how many children train at once for this fitter.
    """

    method_ref: str
    code_hash: str
    limits: Limits
    threads: int | None = None
    slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))
    _busy: set[_Worker] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def __call__(self, method: Method, ctx: TrainContext, task: Task) -> nn.Module:
        """Train ``method`` on ``ctx`` in a child and return the model, loaded here."""
        request = _Request(method_ref=self.method_ref, code_hash=self.code_hash,
                           hparams=method.hparams.model_dump(mode="json"), context=replace(ctx, log=_quiet),
                           sys_path=list(sys.path), cwd=os.getcwd())
        try:
            payload = _dumps(request)
        except Exception as error:
            raise FitFailure(f"the training context cannot be sent to the fit process: {describe_error(error)}"
                             ) from error
        on_cpu = ctx.device.type == "cpu" and self.limits.memory_gb is not None
        config = _Config(memory_bytes=int(self.limits.memory_gb * _GB) if on_cpu else 0,
                         threads=self.threads or torch.get_num_threads())
        with self.slots:
            try:
                model = self._fit(config, payload, ctx.log)
            except _StaleWorker:
                model = self._fit(config, payload, ctx.log, fresh=True)
        try:
            return pickle.loads(model)
        except Exception as error:
            raise FitFailure(f"the trained model cannot be loaded by the evaluating process: "
                             f"{describe_error(error)}") from error

    def stop(self) -> None:
        """Kill the children training for this fitter now and refuse further jobs."""
        with self._lock:
            self._stopped = True
            busy = list(self._busy)
        for worker in busy:
            worker.kill()

    def _fit(self, config: _Config, payload: bytes, log: Callable[[str], None], fresh: bool = False) -> bytes:
        with self._lock:
            if self._stopped:
                raise FitFailure("scoring was stopped before this job trained")
            worker = _Worker(config) if fresh else _POOL.take(config)
            self._busy.add(worker)
        try:
            return worker.fit(payload, self.limits.seconds, log)
        except _StaleWorker as stale:
            if fresh:
                raise FitFailure(f"the fit process cannot load the method: {stale}") from None
            raise
        finally:
            with self._lock:
                self._busy.discard(worker)
            if not worker.broken:
                worker.kill_strays()
            _POOL.give_back(worker)


# --- the child side -----------------------------------------------------------------------------


def serve() -> None:
    """The child's main loop: answer fit requests from the parent until it closes the pipe."""
    read_fd, write_fd, parent_pid, memory_bytes, threads = (int(arg) for arg in sys.argv[1:6])
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    torch.set_num_threads(threads)
    outbox.send(("ready",))
    served = 0
    while True:
        try:
            payload = inbox.recv_bytes()
        except (EOFError, OSError):
            return
        reply = _answer(payload, outbox, reused=served > 0, memory_bytes=memory_bytes)
        served += 1
        outbox.send(reply)


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _answer(payload: bytes, outbox: Connection, *, reused: bool, memory_bytes: int) -> tuple:
    try:
        request: _Request = pickle.loads(payload)
        sys.path[:] = request.sys_path
        os.chdir(request.cwd)
        importlib.invalidate_caches()
        info = resolve_method(request.method_ref)
        if info.code_hash != request.code_hash:
            raise FitFailure(f"method {request.method_ref!r} has code hash {info.code_hash[:12]} here, "
                             f"{request.code_hash[:12]} in the scoring process (its code changed while scoring)")
        method = info.make(request.hparams)
    except Exception as error:
        if reused:
            return ("stale", describe_error(error))
        return ("failed", f"the fit process cannot load the method: {describe_error(error)}", False)
    try:
        torch.manual_seed(request.context.seed)
        model = method.fit(replace(request.context, log=lambda message: outbox.send(("log", str(message)))))
    except Exception as error:
        if _out_of_memory(error):
            limit = f"{memory_bytes / _GB:g} GB address space" if memory_bytes else "no limit set"
            return ("failed", f"memory limit exceeded ({limit}): {describe_error(error)}", True)
        return ("failed", describe_error(error), False)
    try:
        return ("model", cloudpickle.dumps(model))
    except Exception as error:
        return ("failed", f"the trained model cannot be sent to the evaluating process: {describe_error(error)}",
                _out_of_memory(error))


def _out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(marker in str(error).lower() for marker in _MEMORY_MARKERS)
