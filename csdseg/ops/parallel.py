"""Run a per-image CPU function over image ids on a pool of worker processes.

Per-image CPU stages (dense CRF, confident labels, mask evaluation) are single-threaded, so a
process per core is what makes them fast. :func:`map_ids` hides the pool: it sends ``fn`` to
each worker once (not with every task), hands out ids in small chunks, shows a progress bar
(``csdseg.engine.progress``), and returns the results in the order of ``ids``. Workers are started
with ``spawn``: forking a parent that has already started torch/OpenMP threads can deadlock,
and spawn behaves the same on Linux, macOS and Windows. ``fn`` must therefore be picklable (a module-level function, a
``functools.partial`` of one, or an instance of a module-level class).
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable, Sequence, TypeVar

from csdseg.engine.progress import progress_bar

T = TypeVar("T")

_WORKER_FN: Callable[[str], Any] | None = None


def usable_cpus() -> int:
    """CPU cores this process may run on (a container's CPU set, not the host's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def resolve_workers(workers: int, num_items: int | None = None) -> int:
    """``workers`` as a process count: 0 means one per usable core; never more than the items."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = one per CPU core), got {workers}")
    count = workers or usable_cpus()
    if num_items is not None:
        count = min(count, max(num_items, 1))
    return count


def _with_id(exc: BaseException, image_id: str) -> BaseException:
    """The same kind of error, its message prefixed by the image id (RuntimeError if the type
    cannot be rebuilt from one message), so a user error still reads as one line."""
    message = f"image {image_id}: {exc}"
    try:
        new = type(exc)(message)
    except Exception:  # noqa: BLE001 - exception types with unusual constructors
        new = RuntimeError(f"{message} ({type(exc).__name__})")
    return new


def _init_worker(fn: Callable[[str], Any]) -> None:
    global _WORKER_FN
    _WORKER_FN = fn


def _call(image_id: str) -> tuple[str, Any]:
    assert _WORKER_FN is not None, "worker was not initialised"
    try:
        return image_id, _WORKER_FN(image_id)
    except Exception as exc:  # noqa: BLE001 - re-raised with the id; the pool adds the traceback
        raise _with_id(exc, image_id) from exc


def map_ids(fn: Callable[[str], T], ids: Sequence[str], workers: int = 0,
            desc: str = "") -> list[T]:
    """``[fn(i) for i in ids]``, on ``workers`` processes (0 = one per core, <= 1 = inline).

    The first error raised by ``fn`` stops the map and is re-raised here as the same
    exception type with the failing id at the start of its message.
    """
    ids = list(ids)
    count = resolve_workers(workers, len(ids))
    results: dict[str, Any] = {}
    if count <= 1 or len(ids) <= 1:
        for image_id in progress_bar(ids, desc=desc, unit="img", dynamic_ncols=True):
            try:
                results[image_id] = fn(image_id)
            except Exception as exc:  # noqa: BLE001 - same contract as the pool path
                raise _with_id(exc, image_id) from exc
    else:
        # Chunks amortise the inter-process round trip for cheap functions, yet stay small
        # enough that every worker gets at least 4, which keeps the load balanced at the end.
        chunksize = max(1, min(16, len(ids) // (count * 4)))
        context = multiprocessing.get_context("spawn")
        with context.Pool(count, initializer=_init_worker, initargs=(fn,)) as pool:
            stream = pool.imap_unordered(_call, ids, chunksize=chunksize)
            for image_id, value in progress_bar(stream, total=len(ids), desc=desc, unit="img",
                                                dynamic_ncols=True):
                results[image_id] = value
    return [results[image_id] for image_id in ids]
