"""The writing stage of ``--format tiles`` beside the drawing: a thread (:class:`Stage`) or,
on Linux, a forked child process (:class:`ProcessStage`: no GIL shared with the drawing).

Both take items in order and keep memory bounded (a queue of a few items, or a few
shared-memory slots); an error on either side ends the run with one line, nothing left
behind (the builder's output is atomic; the child is killed and reaped)."""

from __future__ import annotations

import gc
import json
import mmap
import os
import queue
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from multiprocessing import Pipe
from typing import Any

import numpy as np

from ..errors import DlprepError

_END = object()


class Stage:
    """Work handed to a thread of its own, in order: ``start()`` there first, then
    ``feed(item)`` for each item :meth:`put` here (through a queue of at most ``depth``
    items, so memory stays bounded), then ``end()`` at :meth:`close`, which waits and raises
    what the thread raised. A producer that fails itself calls :meth:`abort` instead (the
    thread stops at its next item). An error on the thread is also raised by the next
    :meth:`put`, so the producer does not work on for nothing. ``thread=False`` runs the
    same calls inline (for measurements and tests)."""

    def __init__(self, feed: Callable[[Any], None], *, start: Callable[[], None] | None = None,
                 end: Callable[[], None] | None = None, depth: int = 2, thread: bool = True,
                 name: str = "dlprep-stage", switch_interval: float | None = None) -> None:
        self._feed, self._end = feed, end
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._switch: float | None = None
        if not thread:
            if start is not None:
                start()
            return
        if switch_interval is not None:  # restored by close/abort
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(switch_interval)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, args=(start,), name=name,
                                        daemon=True)
        self._thread.start()

    def _run(self, start: Callable[[], None] | None) -> None:
        stopped = False
        try:
            if start is not None:
                start()
            while (item := self._queue.get()) is not _END:
                self._feed(item)
            stopped = True
            if self._end is not None and not self._aborted:
                self._end()
        except BaseException as exc:  # handed to the producer
            self.error = exc
            if not stopped:
                while self._queue.get() is not _END:  # drain: the producer never blocks
                    pass

    _aborted = False

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        if self._thread is None:
            self._feed(item)
        else:
            self._queue.put(item)

    def close(self) -> None:
        if self._thread is None:
            if self._end is not None:
                self._end()
            return
        self._queue.put(_END)
        self._thread.join()
        self._restore()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        if self._thread is not None:
            self._aborted = True
            self._queue.put(_END)
            self._thread.join()
            self._restore()

    def _restore(self) -> None:
        if self._switch is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None


_ALIGN = 64


class ProcessStage:
    """``child(get, send)`` in a forked child process, fed in order: each ``get()`` there
    returns the arrays of the next :meth:`put` (views into a shared-memory slot, valid until
    the next ``get()``; None after the last); ``send(bytes)`` hands a message back, which
    :meth:`put`, :meth:`close` and the wait for a free slot pass to ``on_message`` here, in
    order. ``child`` returns a last message, which :meth:`close` returns. The child shares no
    GIL with this process; ``slots`` items of at most ``slot_bytes`` are in flight. An error
    in the child is raised here as one :class:`DlprepError` line; :meth:`abort` kills it."""

    def __init__(self, child: Callable[[Callable[[], list[np.ndarray] | None],
                                        Callable[[bytes], None]], bytes],
                 on_message: Callable[[bytes], None], slot_bytes: int, slots: int = 3,
                 name: str = "stage") -> None:
        self.name, self.slot_bytes = name, int(slot_bytes)
        self.pid = -1
        self._on_message = on_message
        self._mem = mmap.mmap(-1, self.slot_bytes * slots)
        self._buf = np.frombuffer(self._mem, np.uint8)
        jobs_r, jobs_w = Pipe(False)
        res_r, res_w = Pipe(False)
        _widen(res_w)  # the child's messages (deflated chunks) wait there, not in the child
        collecting = gc.isenabled()
        gc.disable()  # the child starts without: no finaliser of an inherited object runs there
        try:
            with warnings.catch_warnings():  # Python >= 3.12 warns of fork() beside other
                warnings.simplefilter("ignore", DeprecationWarning)  # threads; the child
                self.pid = os.fork()  # runs NumPy, OpenCV and ISA-L on its data, then exits
        finally:
            if collecting and self.pid != 0:
                gc.enable()
        if self.pid == 0:  # the child: never returns
            jobs_w.close()
            res_r.close()
            self._child_main(child, jobs_r, res_w)
        jobs_r.close()
        res_w.close()
        self._jobs, self._res = jobs_w, res_r
        self.slots = slots
        self._free = list(range(slots))
        self._final: bytes | None = None
        self._reserved: int | None = None
        self._reaped = False

    def _child_main(self, child: Callable, jobs: Any, res: Any) -> None:
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the child
            held: list[int] = []

            def get() -> list[np.ndarray] | None:
                if held:  # the previous item is done with: its slot is free again
                    res.send_bytes(b"F" + held.pop().to_bytes(4, "little"))
                msg = jobs.recv_bytes()
                if not msg:
                    return None
                slot = int.from_bytes(msg[:4], "little")
                held.append(slot)
                base = slot * self.slot_bytes
                return [np.ndarray(tuple(shape), np.dtype(dtype), self._buf, base + offset)
                        for dtype, shape, offset in json.loads(msg[4:])]

            final = child(get, res.send_bytes)
            res.send_bytes(b"D" + final)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
            try:
                res.send_bytes(b"E" + f"{type(exc).__name__}: {exc}".encode(errors="replace"))
            except BaseException:  # noqa: BLE001 - the parent is gone
                pass
        finally:
            os._exit(code)

    def _pump(self, wait: Callable[[], bool] | None = None) -> None:
        """Handle the child's messages: those waiting, and more while ``wait()`` holds."""
        while self._final is None and ((wait is not None and wait()) or self._res.poll()):
            try:
                msg = self._res.recv_bytes()
            except EOFError:
                raise DlprepError(f"osm tiles: the {self.name} process ({self.pid}) ended "
                                  f"unexpectedly ({self._reap()})") from None
            tag = msg[:1]
            if tag == b"F":
                self._free.append(int.from_bytes(msg[1:], "little"))
            elif tag == b"E":
                self._reap()
                raise DlprepError(f"osm tiles: the {self.name} process failed: "
                                  f"{msg[1:].decode(errors='replace')}")
            elif tag == b"D":
                self._final = msg[1:]
            else:
                self._on_message(msg)

    def reserve(self, specs: list[tuple[tuple[int, ...], Any]]) -> list[np.ndarray]:
        """Arrays of these (shape, dtype) in a free slot (waiting for one), to fill and hand
        over with :meth:`submit`."""
        self._pump(lambda: not self._free)
        slot = self._free.pop()
        self._reserved = slot
        base, at, arrays = slot * self.slot_bytes, 0, []
        for shape, dtype in specs:
            dt = np.dtype(dtype)
            size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            if at + size > self.slot_bytes:
                raise ValueError(f"ProcessStage: the item is larger than a slot "
                                 f"({self.slot_bytes:,} bytes)")
            arrays.append(np.ndarray(shape, dt, self._buf, base + at))
            at += -(-size // _ALIGN) * _ALIGN
        return arrays

    @property
    def reserved_slot(self) -> int:
        """The slot of the arrays :meth:`reserve` returned last (kept memory: what was
        written there stays until it is written again)."""
        assert self._reserved is not None
        return self._reserved

    def submit(self, arrays: list[np.ndarray]) -> None:
        """Hand the reserved slot's ``arrays`` (from :meth:`reserve`) to the child."""
        slot, self._reserved = self._reserved, None
        assert slot is not None
        base = self._buf.ctypes.data + slot * self.slot_bytes
        layout = [(a.dtype.str, list(a.shape), a.ctypes.data - base) for a in arrays]
        self._send(slot.to_bytes(4, "little") + json.dumps(layout).encode())
        self._pump()

    def put(self, arrays: list[np.ndarray]) -> int:
        """Copy ``arrays`` into a free slot (waiting for one) and hand them to the child;
        returns the slot."""
        views = self.reserve([(a.shape, a.dtype) for a in arrays])
        slot = self.reserved_slot
        for view, a in zip(views, arrays, strict=True):
            view[...] = a
        self.submit(views)
        return slot

    def free_slots(self) -> int:
        """How many slots are free now (the child's waiting messages handled first)."""
        self._pump()
        return len(self._free)

    def _send(self, msg: bytes) -> None:
        try:
            self._jobs.send_bytes(msg)
        except OSError:  # the child is gone: its own error if it sent one, else how it ended
            self._pump(lambda: True)
            raise DlprepError(f"osm tiles: the {self.name} process ({self.pid}) ended "
                              f"unexpectedly ({self._reap()})") from None

    def close(self) -> bytes:
        """After the last :meth:`put`: the child's remaining messages, then its last one."""
        self._send(b"")
        self._pump(lambda: self._final is None)
        status = self._reap()
        if status != "exit status 0":
            raise DlprepError(f"osm tiles: the {self.name} process ended with {status}")
        self._release()
        assert self._final is not None
        return self._final

    def abort(self) -> None:
        """Stop the child (killed) after an error here."""
        if not self._reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        self._release()

    def _reap(self) -> str:
        if self._reaped:
            return self._status
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped already (SIGCHLD ignored by the application)
            self._reaped, self._status = True, "an unknown status"
            return self._status
        self._reaped = True
        if os.WIFSIGNALED(status):
            self._status = f"signal {os.WTERMSIG(status)}"
        else:
            self._status = f"exit status {os.WEXITSTATUS(status)}"
        return self._status

    def _release(self) -> None:
        if not hasattr(self, "_buf"):
            return
        for conn in (self._jobs, self._res):
            conn.close()
        del self._buf
        try:
            self._mem.close()
        except BufferError:  # arrays in it are still referenced: freed with the last one
            pass


PIPE_BYTES = 1 << 20  # the pipe of the child's messages (Linux's default is 64 KiB)


def _widen(conn: Any) -> None:
    """Let a pipe hold ``PIPE_BYTES`` (Linux; capped by /proc/sys/fs/pipe-max-size), so a
    child sending a block's deflated chunks does not wait while this process draws."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):  # elsewhere, or above the system's cap: as it is
        pass


def can_fork() -> bool:
    """A child process can be forked for a stage (Linux; elsewhere fork is missing or unsafe
    with the libraries loaded)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")
