"""Both cores: worker processes decode disjoint sets of TCP connections, the parent merges.

Every worker reads the whole capture and keeps the connections whose port sum falls to it
(other workers' packets are recognised from a few header bytes, not decoded); each runs
the same Emitter as a single process and sends its events to the parent in batches. Events
carry the packet being processed, so the parent merges the workers' event streams into
capture order and feeds one Assembler: connection ids, cross-connection rules (cancel
storms over a client host, deadline-missing per method) and the sink see exactly what one
process would have produced. tests/test_parallel.py holds the two paths equal on every
stored capture. (The exception by design: the memory bounds in reassembly.py, MAX_OPEN
connections and OOO_TOTAL_CAP buffered bytes, apply per worker, so a capture that exceeds
them may be cut differently than by one process; the capture's warnings say when they were
reached.)
"""

from __future__ import annotations

import heapq
import os
import signal
import sys
import traceback
from typing import BinaryIO, Callable, Iterator, Optional

from .errors import CaptureError
from .http2.connection import DecodeContext
from .results import Assembler, Emitter, Sink

MIN_PARALLEL_BYTES = 32 * 1024 * 1024  # below this, starting workers costs more than it saves
BATCH = 2048  # events per message to the parent
END, ERROR, MARK = "end", "error", "w"


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may run on, not the host's count
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_jobs(path: str) -> int:
    """Workers worth starting for this capture: 2 on a big regular file, else 1."""
    if path == "-" or _usable_cpus() < 2 or not hasattr(os, "fork"):
        return 1
    try:
        if not os.path.isfile(path) or os.path.getsize(path) < MIN_PARALLEL_BYTES:
            return 1
    except OSError:
        return 1
    return 2


# Workers are forked with os.fork and talk over os.pipe, not through multiprocessing:
# importing multiprocessing (its connection and fork modules with it) took 11 ms, a tenth of
# W3-100MB's whole run with two workers (0.10 s). A message is its length (8 bytes, little
# endian) and a pickle.


class _Writer:
    """The worker's end of its pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send_bytes(self, data: bytes) -> None:
        for part in (len(data).to_bytes(8, "little"), data):
            view = memoryview(part)
            while view:
                view = view[os.write(self.fd, view):]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Reader:
    """The parent's end of a worker's pipe."""

    def __init__(self, fd: int) -> None:
        self.file: BinaryIO = os.fdopen(fd, "rb")

    def recv_bytes(self) -> bytes:
        head = self.file.read(8)
        if len(head) < 8:
            raise EOFError
        n = int.from_bytes(head, "little")
        data = self.file.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def close(self) -> None:
        self.file.close()


def _fork_worker(index: int, jobs: int, path: str, options, sink: Sink, rules: bool,
                 inherited: list[_Reader]) -> tuple[int, _Reader]:
    """Start worker `index`: (its pid, the end of the pipe it writes to)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the parent's code
        code = 1
        try:
            os.close(r)
            for other in inherited:  # the pipes of the workers forked before this one
                other.close()
            _worker(index, jobs, path, options, sink, rules, _Writer(w))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, _Reader(r)


def _worker(index: int, jobs: int, path: str, options, sink: Sink, rules: bool, conn: _Writer) -> None:
    import pickle

    from .analysis import decode_capture

    batch: list = []
    send = conn.send_bytes
    state = {"bytes": 0}

    def flush() -> None:
        send(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        batch.clear()

    def out(ev: tuple) -> None:
        batch.append(ev)
        if len(batch) >= BATCH:
            flush()

    emitter = Emitter(options, sink, out, rules=rules)

    def tick(number: int) -> None:
        # Nothing this worker emits from now on comes before `number`: lets the parent go on
        # merging while this worker's connections are quiet.
        emitter.advance(number)
        batch.append((MARK, number, state["bytes"]))
        flush()

    def progress(done: int) -> None:
        state["bytes"] = done

    try:
        ctx = DecodeContext(emitter, decode_as=options.decode_as, keep_frames=False)
        info = decode_capture(path, ctx, options, progress=progress, part=index, parts=jobs, tick=tick)
        batch.append((END, info, ctx.total_frames))
        flush()
    except CaptureError as e:
        batch.clear()
        batch.append((ERROR, str(e), None))
        flush()
    except BaseException as e:  # reported by the parent as an internal error
        batch.clear()
        batch.append((ERROR, None, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        try:
            flush()
        except OSError:
            pass
    finally:
        conn.close()


def run_parallel(path: str, sink: Sink, options, jobs: int, *, rules: bool = True,
                 progress: Optional[Callable[[int], None]] = None):
    """Like analysis.run, with `jobs` worker processes."""
    from .analysis import Run

    sys.stdout.flush()  # a forked worker holds a copy of these buffers
    sys.stderr.flush()
    pids: list[int] = []
    pipes: list[_Reader] = []
    try:
        for i in range(jobs):
            pid, pipe = _fork_worker(i, jobs, path, options, sink, rules, pipes)
            pids.append(pid)
            pipes.append(pipe)
        assembler = Assembler(options, sink, rules=rules)
        ends: list = [None] * jobs
        streams = [_events(i, pipes[i], assembler, ends, progress if i == 0 else None) for i in range(jobs)]
        handle = assembler.handle
        for _key, worker, _seq, ev in heapq.merge(*streams):
            if ev[0] != MARK:
                handle(worker, ev)
        for pid in pids:
            os.waitpid(pid, 0)
        pids = []
    finally:
        for pid in pids:  # an error or an interrupt: the workers go too
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
        for r in pipes:
            r.close()
    assembler.finish()
    info = ends[0][1]  # every worker read every packet: capture facts are the same in each
    late = sum(e[1].skipped.get("after connection close", 0) for e in ends)
    if late:
        info.skipped["after connection close"] = late
    return Run(capture=info, frames=sum(e[2] for e in ends))


def _events(worker: int, pipe, assembler: Assembler, ends: list,
            progress: Optional[Callable[[int], None]]) -> Iterator[tuple]:
    """One worker's events as (merge key, worker, sequence, event), in capture order."""
    import pickle

    seq = 0
    while True:
        try:
            batch = pickle.loads(pipe.recv_bytes())
        except EOFError:
            raise RuntimeError(f"h2scope worker {worker} ended without a result") from None
        for ev in batch:
            kind = ev[0]
            seq += 1
            if kind == MARK:
                if progress is not None and ev[2]:
                    progress(ev[2])
                yield ((0, ev[1]), worker, seq, ev)
            elif kind == END:
                ends[worker] = ev
                return
            elif kind == ERROR:
                if ev[1] is not None:
                    raise CaptureError(ev[1])
                if os.environ.get("H2SCOPE_DEBUG"):
                    print(ev[2], file=sys.stderr)
                raise RuntimeError(f"worker {worker}: {ev[2].splitlines()[0]}")
            else:
                at = ev[1]
                # Connections flushed at the end of the capture come in connection order; the
                # NEW event that named this one came earlier from the same worker.
                key = (0, at) if at is not None else (1, assembler.gid(worker, ev[2]))
                yield (key, worker, seq, ev)
