"""Running a method's ``fit`` in a persistent child process, under a wall-time and a memory limit.

The process that scores (the *parent*) builds each job's data, gives the method exactly the
:class:`~sbbench.methods.base.TrainContext` that :func:`sbbench.runner.train_context` built for
its track (sent with cloudpickle: parent to child only), and receives the trained model back
**as data**: the child exports it (:func:`sbbench.models.transfer.export_model`) and the parent
rebuilds it from ATen operators and tensors (:func:`~sbbench.models.transfer.load_model`), so
no code of the method ever runs in the parent. Every message from the child is JSON, never a
pickle; the training diagnostics the method reported (``ctx.report``) travel as JSON numbers in
the message that announces the model, are checked again here and land in the parent's context.
The test split never leaves the parent, which checks and evaluates the model:
:func:`sbbench.runner.run_job` with an :class:`IsolatedFit` as its fitter.

Children are started once (``python -c`` with a private pair of pipes) and reused by every later
job that needs the same limits, so interpreter and torch start-up are paid once per worker,
not once per job. A child

* runs under ``RLIMIT_AS`` (soft and hard limit, so the method cannot raise it) when it trains
  on the CPU, and reports an allocation failure as "memory limit exceeded" (then retires);
  the parent also sums the resident memory of the child's whole process group twice a second
  and kills the group when the sum exceeds the limit (``RLIMIT_AS`` binds each process alone:
  processes that ``fit`` starts inherit it one by one);
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
import json
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
from typing import Any, Literal

import cloudpickle
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from sbbench.methods.base import TrainContext, TrainDiagnostics
from sbbench.methods.registry import MethodInfo, current_code_hash
from sbbench.models.transfer import TransferError, export_model, load_model
from sbbench.results import DiagnosticError, checked_diagnostics
from sbbench.runner import FitFailure, describe_error
from sbbench.suite import Suite

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


DEFAULT_LIMITS = Limits(seconds=Suite.model_fields["fit_seconds_limit"].default,
                        memory_gb=Suite.model_fields["fit_memory_limit_gb"].default)
"""The limits of a fit outside any suite (``sbbench run``, ``sbbench plot``): a suite's defaults."""


@dataclass(frozen=True)
class _Config:
    """How a child is started; children are reused only by jobs with the same configuration."""

    memory_bytes: int  # 0: no address-space limit
    threads: int


@dataclass(frozen=True)
class _Request:
    """One job, as the child receives it."""

    info: MethodInfo
    hparams: dict[str, Any]
    context: TrainContext
    sys_path: list[str]
    cwd: str


class _Message(BaseModel):
    """A message from a child: parsed from JSON and validated, never unpickled.

    ``diagnostics`` (with ``kind == "model"``) are the training diagnostics the method reported.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["ready", "log", "model", "stale", "failed"]
    text: str = ""
    retire: bool = False
    diagnostics: dict[str, float] = Field(default_factory=dict)


MESSAGE_BYTES = 1024**2
"""The longest JSON message a child may send (a log line, a reason)."""

MODEL_BYTES = 16 * 1024**3
"""The largest model archive a child may send."""

MEMORY_POLL_SECONDS = 0.5
"""How often the parent sums the resident memory of a child's process group."""


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

    def fit(self, payload: bytes, limits: Limits, log: Callable[[str], None]) -> tuple[bytes, dict[str, float]]:
        """Send one pickled request and return the model archive and the training diagnostics the child sent
        (JSON numbers, not yet checked); raise :class:`FitFailure` otherwise.

        A watchdog thread enforces the limits (it kills the child's group, which ends any read
        here), so a child that stalls in the middle of a message cannot hold the parent.
        """
        self._await_ready()
        try:
            self._outbox.send_bytes(payload)
        except OSError:
            raise self._death() from None
        self.served += 1
        watchdog = _Watchdog(self, limits)
        watchdog.start()
        try:
            while True:
                message = self._receive()
                if message.kind == "log":
                    log(message.text)
                elif message.kind == "model":
                    return self._receive_bytes(MODEL_BYTES), dict(message.diagnostics)
                elif message.kind == "stale":
                    self.broken = True
                    raise _StaleWorker(message.text)
                else:
                    self.broken = message.retire or message.kind != "failed"
                    raise FitFailure(message.text if message.kind == "failed" else
                                     f"the fit process sent an unexpected {message.kind!r} message")
        except FitFailure:
            if watchdog.reason is not None:
                raise FitFailure(watchdog.reason) from None
            raise
        finally:
            watchdog.stop()

    def _fail(self, reason: str) -> None:
        self.kill()
        self._close_pipes()
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
        if self._receive().kind != "ready":
            self._fail("the fit process sent an unexpected first message")
        self._ready = True

    def _receive(self) -> _Message:
        raw = self._receive_bytes(MESSAGE_BYTES)
        try:
            return _Message.model_validate_json(raw)
        except ValidationError:
            self._fail("the fit process sent a malformed message")

    def _receive_bytes(self, limit: int) -> bytes:
        try:
            return self._inbox.recv_bytes(limit)
        except (EOFError, OSError):
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


def group_resident_bytes(pgid: int) -> int:
    """The resident memory (RSS) of every process of group ``pgid`` together, in bytes (from ``/proc``)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in _group_members(pgid):
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


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


class _Watchdog(threading.Thread):
    """Kills a worker's process group when its fit overruns the time limit or the group's memory limit.

    ``reason`` says why, once it has killed.
    """

    def __init__(self, worker: _Worker, limits: Limits) -> None:
        super().__init__(daemon=True, name="sbbench-fit-watchdog")
        self.worker, self.limits = worker, limits
        self.reason: str | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limits.seconds
        while not self._stopped.wait(max(0.0, min(MEMORY_POLL_SECONDS, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return self._kill(f"time limit exceeded after {self.limits.seconds:g} s (the suite's "
                                  "fit_seconds_limit; raise it with --fit-seconds)")
            if self.limits.memory_gb is None:
                continue
            used = group_resident_bytes(self.worker.process.pid)
            if used > self.limits.memory_gb * _GB:
                return self._kill(f"memory limit exceeded: the fit process and the processes it started held "
                                  f"{used / _GB:.2f} GB together (limit {self.limits.memory_gb:g} GB; raise it "
                                  "with --fit-memory-gb)")

    def _kill(self, reason: str) -> None:
        self.reason = reason
        self.worker.kill()

    def stop(self) -> None:
        self._stopped.set()


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
        limits: the suite's time and memory limits.
        threads: torch threads of the child (``None``: this process's current setting).
        slots: bounds how many children train at once for this fitter.
    """

    limits: Limits
    threads: int | None = None
    slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))
    _busy: set[_Worker] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def __call__(self, info: MethodInfo, hparams: dict[str, Any], ctx: TrainContext) -> nn.Module:
        """Train the method on ``ctx`` in a child and return the model, rebuilt here from the child's archive.

        The child checks that the method's code still has ``info.code_hash``. The training
        diagnostics the method reported arrive with the model as JSON numbers; they are checked
        (names, finiteness, count) and recorded in ``ctx.diagnostics``.
        """
        request = _Request(info=info, hparams=hparams, context=replace(ctx, log=_quiet, diagnostics=TrainDiagnostics()),
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
                archive, diagnostics = self._fit(config, payload, ctx.log)
            except _StaleWorker:
                archive, diagnostics = self._fit(config, payload, ctx.log, fresh=True)
        try:
            model = load_model(archive, ctx.device)
        except TransferError as error:
            raise FitFailure(f"the trained model cannot be loaded by the evaluating process: {error}") from None
        try:
            ctx.diagnostics.update(checked_diagnostics(diagnostics))
        except DiagnosticError as error:
            raise FitFailure(f"the fit process sent invalid training diagnostics: {error}") from None
        return model

    def stop(self) -> None:
        """Kill the children training for this fitter now and refuse further jobs."""
        with self._lock:
            self._stopped = True
            busy = list(self._busy)
        for worker in busy:
            worker.kill()

    def _fit(self, config: _Config, payload: bytes, log: Callable[[str], None],
             fresh: bool = False) -> tuple[bytes, dict[str, float]]:
        with self._lock:
            if self._stopped:
                raise FitFailure("scoring was stopped before this job trained")
            worker = _Worker(config) if fresh else _POOL.take(config)
            self._busy.add(worker)
        try:
            return worker.fit(payload, self.limits, log)
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
    _send(outbox, "ready")
    served = 0
    while True:
        try:
            payload = inbox.recv_bytes()
        except (EOFError, OSError):
            return
        _answer(payload, outbox, reused=served > 0, memory_bytes=memory_bytes)
        served += 1


def _send(outbox: Connection, kind: str, text: str = "", retire: bool = False,
          diagnostics: dict[str, float] | None = None) -> None:
    message: dict[str, Any] = {"kind": kind, "text": text, "retire": retire}
    if diagnostics:
        message["diagnostics"] = diagnostics
    outbox.send_bytes(json.dumps(message, allow_nan=False).encode())


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _answer(payload: bytes, outbox: Connection, *, reused: bool, memory_bytes: int) -> None:
    """Train one request's method and send its model archive, or the reason it failed."""
    try:
        request: _Request = pickle.loads(payload)
        sys.path[:] = request.sys_path
        os.chdir(request.cwd)
        importlib.invalidate_caches()
        info = request.info
        found = current_code_hash(info)
        if found != info.code_hash:
            raise FitFailure(f"method {info.ref!r} has code hash {found[:12]} here, {info.code_hash[:12]} in the "
                             "scoring process (its code changed while scoring)")
        cls = info.load_class()
        method = cls(cls.HParams.model_validate(request.hparams))
    except Exception as error:
        if reused:
            return _send(outbox, "stale", describe_error(error))
        return _send(outbox, "failed", f"the fit process cannot load the method: {describe_error(error)}")
    ctx = replace(request.context, log=lambda message: _send(outbox, "log", str(message)))
    try:
        torch.manual_seed(ctx.seed)
        model = method.fit(ctx)
        if not isinstance(model, nn.Module):
            return _send(outbox, "failed", f"fit must return a torch.nn.Module, got {type(model).__name__}")
        archive = export_model(model, ctx.train.x[:8])
        diagnostics = _reported(ctx)
    except TransferError as error:
        return _send(outbox, "failed", str(error))
    except Exception as error:
        if _out_of_memory(error):
            limit = f"{memory_bytes / _GB:g} GB address space" if memory_bytes else "no limit set"
            return _send(outbox, "failed", f"memory limit exceeded ({limit}): {describe_error(error)}", True)
        return _send(outbox, "failed", describe_error(error))
    _send(outbox, "model", diagnostics=diagnostics)
    outbox.send_bytes(archive)


def _reported(ctx: TrainContext) -> dict[str, float]:
    """The training diagnostics ``fit`` reported, checked (raises :class:`DiagnosticError` naming the problem)."""
    if not isinstance(ctx.diagnostics, TrainDiagnostics):
        raise DiagnosticError(f"ctx.diagnostics was replaced by a {type(ctx.diagnostics).__name__}; report training "
                              "diagnostics with ctx.report(name, value)")
    return checked_diagnostics(ctx.diagnostics.values())


def _out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(marker in str(error).lower() for marker in _MEMORY_MARKERS)
