"""Static buffer-reuse planning: one arena for every activation, an offset for each buffer.

The problem
-----------
Each buffer ``b`` needs ``size(b)`` contiguous bytes during the steps ``start(b)..end(b)``
(inclusive, see :mod:`hwopt.memory.buffers`). A plan gives every buffer an offset so that two
buffers alive at a common step never share a byte; its cost is the arena, ``max(offset + size)``.
Drawn with time across and addresses up, each buffer is a rectangle that may only slide
vertically, and the arena is the height of the packing. This is Dynamic Storage Allocation,
NP-complete (Garey and Johnson, *Computers and Intractability*, 1979, problem SR2), so every
strategy here is a heuristic, judged against a bound::

    lower_bound = max over steps t of  sum of size(b) over the buffers b alive at t

No plan does better: the buffers alive at the busiest step must sit side by side. The bound is
not always reachable (Buchsbaum et al., "OPT versus LOAD in dynamic storage allocation",
STOC 2003): a gap left under one buffer can be one byte too small for the next.

Best fit among the buffers that overlap in time
-----------------------------------------------
Every strategy shares one placement rule, the offset calculation of Pisarchyk and Lee,
"Efficient Memory Management for Deep Neural Net Inference" (arXiv:2001.03288, 2020), as
TensorFlow Lite's GPU delegate implements it
(``tensorflow/lite/delegates/gpu/common/memory_management/greedy_by_size_assignment.cc``).
Buffers are placed one at a time in some order. To place ``b``, take the already placed
buffers whose lifetimes intersect ``b``'s, sorted by offset; the free gaps between them are
the only addresses ``b`` may take without moving anything (buffers that do not overlap ``b``
in time are ignored: their bytes are free for ``b``). ``b`` goes into the smallest gap that
holds it (best fit; the lowest such gap on a tie), else just above the highest of them. A
strategy is therefore an *order*, and the order is what decides the arena. Execution order,
which an online allocator follows (so does ONNX Runtime's memory-pattern planner,
``onnxruntime/core/framework/mem_pattern_planner.h``), is a poor one: small buffers arrive
first and cut the arena into pieces too short for the large ones that follow. On ResNet-like
lifetimes it needs about 1.5 times the bound that greedy by breadth reaches.

Strategies (:data:`STRATEGIES`, in the order :func:`plan_memory` tries them)
------------------------------------------------------------------------------
``greedy_by_size``
    Pisarchyk and Lee's "greedy by size" for offsets, as in TFLite: largest buffer first. Ties
    go to the longer lifetime, then the earlier start, then the name, so that the plan does
    not depend on the order of the input. Big buffers laid down first leave gaps that the
    small ones fill.
``greedy_by_breadth``
    The same paper's "greedy by breadth". The *breadth* of a step is the total size of the
    buffers alive at it. Steps are visited from the broadest down (the earlier step on a tie);
    at each, its buffers not yet placed are placed largest first (same tie-breaks). The
    busiest steps, which set the lower bound, are packed first and tightest. Only steps where
    some buffer starts need visiting: any other step's buffers are all alive at the latest
    start before it, whose breadth is therefore at least as large and which comes first.
``greedy_by_duration``
    Longest lifetime first, then largest: XLA's ``GlobalDecreasingSizeBestFitHeap`` with its
    ``kTemporal`` packing strategy (``xla/service/heap_simulator/heap_simulator.h``). Buffers
    that span a whole stage (a skip connection, a graph output, an encoder's output read by
    every decoder layer) become a floor at the bottom of the arena, and each block's
    short-lived buffers pack above it.
``greedy_by_area``
    Largest ``size * lifetime`` first: XLA's ``kSpatialTemporal``. Between the two orders
    above, for when a large short-lived buffer (attention scores) and a long small one (the
    residual stream) compete for the bottom.
``hill_climb``
    A bounded local search over placement orders, after the hill climb of Apache TVM's
    unified static memory planner (``src/tir/usmp/algo/hill_climb.cc``), made deterministic.
    It starts from the order of the best greedy plan above. Each round picks a buffer that
    reaches the top of the arena, one of the buffers alive alongside it, and either the first
    or a buffer alive alongside that one; it swaps the two in the order and places again. The
    swap is kept when the plan is no worse: a smaller arena, or the same arena reached by no
    more buffers (so that two peaks can be lowered one after the other). Choices come from a
    fixed seed and the search stops after a fixed amount of placement work (about ``2n``
    buffer placements, at least :data:`HILL_CLIMB_MIN_WORK`), never a clock, so a plan is the
    same on every machine. Re-placing after a swap is incremental: only the buffers whose
    lifetime meets a buffer that moved (the swapped pair, then any whose offset changed) are
    placed again; the others would get the same offset. The greedy orders fail in two
    typical ways that a few swaps repair: a growing chain (DenseNet's concatenations, each
    one channel group larger than the last, which never fit the hole the previous one left)
    and a small long-lived buffer left in the middle of a gap two large ones needed.

:func:`plan_memory` runs them all and keeps the smallest arena, the earlier strategy above on a
tie. The hill climb never accepts a larger arena, so it is never worse than the best greedy.

Alignment
---------
Every size is rounded up to ``alignment`` bytes: 64 by default, the alignment of ONNX
Runtime's CPU allocator (``AllocatorDefaultAlloc`` in ``onnxruntime/core/framework/
allocator.cc`` aligns to ``MlasGetPreferredBufferAlignment()``, by default
``MLAS_DEFAULT_PREFERRED_BUFFER_ALIGNMENT``, 64 bytes; 32 in older releases). Every gap and
every offset is then a multiple of it. Zero-size buffers get size 0 at
offset 0 and conflict with nothing.

Cost
----
One greedy pass places ``n`` buffers; each placement scans the placed buffers for those alive
alongside (a numpy mask) and walks the ``k`` it finds in offset order, ``O(n + k log k)``.
The hill climb adds about two passes' worth of placements. On the lifetimes of CNNs and
transformers ``k`` is a handful; :func:`plan_memory` on 2,000 buffers takes well under a
second on one core.
"""

from __future__ import annotations

import dataclasses
import heapq
import numbers
import random
from collections.abc import Callable, Sequence

import numpy as np

from hwopt.errors import HwoptError
from hwopt.memory.buffers import Buffer

DEFAULT_ALIGNMENT = 64
# The hill climb's work budget, in buffer placements: this many, or twice the buffer count.
HILL_CLIMB_MIN_WORK = 2000
HILL_CLIMB_SEED = 0
# Above this many buffers alive alongside, the gap search runs in numpy rather than Python.
_NUMPY_GAP_SEARCH_FROM = 48


class PlanError(HwoptError, ValueError):
    """A memory plan that is not safe to run: two live buffers sharing bytes, or a placement
    missing, misaligned or outside the arena. Whatever produced the plan has a bug."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one buffer lives in the arena; ``size`` is after alignment rounding."""

    name: str
    offset: int
    size: int
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """An offset for every buffer; ``placements`` follow the order of the input buffers."""

    strategy: str
    arena_bytes: int
    placements: tuple[Placement, ...]

    def to_dict(self) -> dict:
        """JSON-ready form: the strategy, the arena, and each tensor's bytes and steps."""
        return {
            "strategy": self.strategy,
            "arena_bytes": self.arena_bytes,
            "placements": [
                {
                    "tensor": p.name,
                    "offset": p.offset,
                    "size": p.size,
                    "first_use": p.start,
                    "last_use": p.end,
                }
                for p in self.placements
            ],
        }


def aligned(size: int, alignment: int) -> int:
    """``size`` rounded up to a multiple of ``alignment``."""
    _check_alignment(alignment)
    return -(-size // alignment) * alignment


def naive_bytes(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT) -> int:
    """The arena without reuse: every buffer its own aligned bytes."""
    return sum(aligned(b.size, alignment) for b in buffers)


def lower_bound(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT) -> int:
    """The most aligned bytes alive at one step: no plan's arena can be smaller."""
    return _Problem(buffers, alignment).peak_live_bytes()


def plan_greedy_by_size(
    buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT
) -> MemoryPlan:
    """Largest buffer first, each into the best-fitting gap (TFLite's GreedyBySize)."""
    problem = _Problem(buffers, alignment)
    return problem.plan("greedy_by_size", problem.place(problem.order_by_size()))


def plan_greedy_by_breadth(
    buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT
) -> MemoryPlan:
    """Broadest step first, its buffers largest first, each into the best-fitting gap."""
    problem = _Problem(buffers, alignment)
    return problem.plan("greedy_by_breadth", problem.place(problem.order_by_breadth()))


def plan_greedy_by_duration(
    buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT
) -> MemoryPlan:
    """Longest lifetime first, then largest, each into the best-fitting gap (XLA kTemporal)."""
    problem = _Problem(buffers, alignment)
    return problem.plan("greedy_by_duration", problem.place(problem.order_by_duration()))


def plan_greedy_by_area(
    buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT
) -> MemoryPlan:
    """Largest size x lifetime first, each into the best-fitting gap (XLA kSpatialTemporal)."""
    problem = _Problem(buffers, alignment)
    return problem.plan("greedy_by_area", problem.place(problem.order_by_area()))


def plan_hill_climb(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT) -> MemoryPlan:
    """The best greedy order, improved by seeded swaps around the buffers at the arena's top."""
    problem = _Problem(buffers, alignment)
    _, _, order, offsets = problem.best_greedy()
    return problem.plan("hill_climb", problem.hill_climb(order, offsets))


STRATEGIES: dict[str, Callable[[Sequence[Buffer], int], MemoryPlan]] = {
    "greedy_by_size": plan_greedy_by_size,
    "greedy_by_breadth": plan_greedy_by_breadth,
    "greedy_by_duration": plan_greedy_by_duration,
    "greedy_by_area": plan_greedy_by_area,
    "hill_climb": plan_hill_climb,
}


def plan_memory(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT) -> MemoryPlan:
    """The plan with the smallest arena of all :data:`STRATEGIES`; the earlier wins a tie."""
    problem = _Problem(buffers, alignment)
    strategy, arena, order, offsets = problem.best_greedy()
    climbed = problem.hill_climb(order, offsets)
    if problem.arena(climbed) < arena:
        return problem.plan("hill_climb", climbed)
    return problem.plan(strategy, offsets)


def check_plan(
    buffers: Sequence[Buffer], plan: MemoryPlan, alignment: int = DEFAULT_ALIGNMENT
) -> None:
    """Raise :class:`PlanError` unless ``plan`` is safe for ``buffers``.

    Safe means: one placement per buffer, in the same order, with the buffer's name and steps;
    each size at least the buffer's and, like each offset, a multiple of ``alignment`` (a plan
    made for a coarser alignment that is a multiple of it passes too); every byte inside
    ``arena_bytes``; and no two buffers alive at a common step sharing a byte (the error
    names both).
    """
    _check_alignment(alignment)
    if len(plan.placements) != len(buffers):
        placed = {p.name for p in plan.placements}
        missing = [b.name for b in buffers if b.name not in placed]
        raise PlanError(
            f"plan {plan.strategy!r} has {len(plan.placements)} placements for "
            f"{len(buffers)} buffers" + (f"; no placement for {missing[:5]}" if missing else "")
        )
    for buffer, placement in zip(buffers, plan.placements):
        if (placement.name, placement.start, placement.end) != (
            buffer.name,
            buffer.start,
            buffer.end,
        ):
            raise PlanError(
                f"placement {placement.name!r} (steps {placement.start}..{placement.end}) "
                f"stands where buffer {buffer.name!r} (steps {buffer.start}..{buffer.end}) "
                "should be"
            )
        if placement.size < buffer.size or placement.size % alignment:
            raise PlanError(
                f"buffer {buffer.name!r} of {buffer.size} bytes is given {placement.size}, "
                f"not at least {aligned(buffer.size, alignment)} in {alignment}-byte units"
            )
        if placement.offset < 0 or placement.offset % alignment:
            raise PlanError(
                f"buffer {buffer.name!r} is at offset {placement.offset}, "
                f"not a non-negative multiple of {alignment}"
            )
        if placement.offset + placement.size > plan.arena_bytes:
            raise PlanError(
                f"buffer {buffer.name!r} ends at byte {placement.offset + placement.size}, "
                f"past the {plan.arena_bytes}-byte arena"
            )
    _check_no_shared_bytes(plan.placements)


def _check_alignment(alignment: int) -> None:
    if isinstance(alignment, bool) or not isinstance(alignment, numbers.Integral) or alignment < 1:
        raise ValueError(f"alignment must be a positive number of bytes, not {alignment!r}")


def _check_no_shared_bytes(placements: Sequence[Placement]) -> None:
    """Raise on the first pair, in input order, alive at a common step and sharing a byte."""
    sized = [p for p in placements if p.size > 0]
    if len(sized) < 2:
        return
    start = np.array([p.start for p in sized], dtype=np.int64)
    end = np.array([p.end for p in sized], dtype=np.int64)
    low = np.array([p.offset for p in sized], dtype=np.int64)
    high = low + np.array([p.size for p in sized], dtype=np.int64)
    for k in range(len(sized) - 1):
        clash = np.flatnonzero(
            (start[k + 1 :] <= end[k])
            & (end[k + 1 :] >= start[k])
            & (low[k + 1 :] < high[k])
            & (high[k + 1 :] > low[k])
        )
        if len(clash):
            a, b = sized[k], sized[k + 1 + int(clash[0])]
            raise PlanError(
                f"buffers {a.name!r} (steps {a.start}..{a.end}, bytes {a.offset}.."
                f"{a.offset + a.size}) and {b.name!r} (steps {b.start}..{b.end}, bytes "
                f"{b.offset}..{b.offset + b.size}) are alive together and share bytes"
            )


class _Problem:
    """The buffers as arrays (aligned sizes, step ranges) and the placement machinery.

    Orders hold only the buffers with a size above zero; the others keep offset 0. Offsets
    are arrays indexed by buffer, like ``size``, ``start`` and ``end``.
    """

    def __init__(self, buffers: Sequence[Buffer], alignment: int) -> None:
        _check_alignment(alignment)
        self.buffers = buffers
        self.size = np.array([aligned(b.size, alignment) for b in buffers], dtype=np.int64)
        self.start = np.array([b.start for b in buffers], dtype=np.int64)
        self.end = np.array([b.end for b in buffers], dtype=np.int64)
        by_name = sorted(range(len(buffers)), key=lambda i: (buffers[i].name, i))
        # The last tie-break of every order, so that plans do not depend on the input order.
        self.name_rank = np.empty(len(buffers), dtype=np.int64)
        self.name_rank[by_name] = np.arange(len(buffers))
        self.sized = np.flatnonzero(self.size > 0)
        self.work = 0  # buffer placements computed so far: the hill climb's budget counts them

    # -- bounds -------------------------------------------------------------------------------

    def start_breadths(self) -> tuple[np.ndarray, np.ndarray]:
        """The steps where some sized buffer starts, and the bytes alive at each."""
        idx = self.sized
        steps = np.unique(self.start[idx])
        delta = np.zeros(len(steps) + 1, dtype=np.int64)
        # A buffer counts from its start to the last of these steps that is <= its end.
        np.add.at(delta, np.searchsorted(steps, self.start[idx]), self.size[idx])
        np.add.at(delta, np.searchsorted(steps, self.end[idx], side="right"), -self.size[idx])
        return steps, np.cumsum(delta[:-1])

    def peak_live_bytes(self) -> int:
        # Live bytes only rise where a buffer starts, so the peak is at one of those steps.
        return int(self.start_breadths()[1].max()) if len(self.sized) else 0

    # -- orders -------------------------------------------------------------------------------

    def _sorted(self, *keys: np.ndarray) -> np.ndarray:
        """The sized buffers by ascending ``keys``, then longer lifetime, earlier start, name."""
        idx = self.sized
        tie_breaks = (self.start[idx] - self.end[idx], self.start[idx], self.name_rank[idx])
        columns = [k[idx] for k in keys] + list(tie_breaks)
        return idx[np.lexsort(columns[::-1])]  # lexsort's primary key is its last

    def order_by_size(self) -> np.ndarray:
        return self._sorted(-self.size)

    def order_by_duration(self) -> np.ndarray:
        return self._sorted(self.start - self.end, -self.size)

    def order_by_area(self) -> np.ndarray:
        return self._sorted(-self.size * (self.end - self.start + 1), -self.size)

    def order_by_breadth(self) -> np.ndarray:
        if not len(self.sized):
            return self.sized
        steps, breadth = self.start_breadths()
        visit = np.empty(len(steps), dtype=np.int64)  # when each step is visited
        visit[np.lexsort((steps, -breadth))] = np.arange(len(steps))
        first = np.searchsorted(steps, self.start[self.sized]).tolist()
        past = np.searchsorted(steps, self.end[self.sized], side="right").tolist()
        # A buffer is placed at the first visited step among those of its lifetime.
        first_visit = np.zeros(len(self.size), dtype=np.int64)
        first_visit[self.sized] = [int(visit[a:b].min()) for a, b in zip(first, past)]
        return self._sorted(first_visit, -self.size)

    def best_greedy(self) -> tuple[str, int, np.ndarray, np.ndarray]:
        """The greedy strategy with the smallest arena (the earlier on a tie), its arena,
        order and offsets."""
        best: tuple[str, int, np.ndarray, np.ndarray] | None = None
        for strategy, order in (
            ("greedy_by_size", self.order_by_size()),
            ("greedy_by_breadth", self.order_by_breadth()),
            ("greedy_by_duration", self.order_by_duration()),
            ("greedy_by_area", self.order_by_area()),
        ):
            offsets = self.place(order)
            arena = self.arena(offsets)
            if best is None or arena < best[1]:
                best = (strategy, arena, order, offsets)
        assert best is not None
        return best

    # -- placement ----------------------------------------------------------------------------

    def place(self, order: np.ndarray) -> np.ndarray:
        """Offsets for every buffer, placing the buffers of ``order`` one by one by best fit."""
        offsets = np.zeros(len(self.size), dtype=np.int64)
        start, end, size = self.start[order], self.end[order], self.size[order]
        low = np.zeros(len(order), dtype=np.int64)
        high = np.zeros(len(order), dtype=np.int64)
        for k, (s, e, z) in enumerate(zip(start.tolist(), end.tolist(), size.tolist())):
            offset = self._best_fit(k, s, e, z, start, end, low, high)
            low[k], high[k] = offset, offset + z
        offsets[order] = low
        return offsets

    def _best_fit(
        self,
        k: int,
        start_k: int,
        end_k: int,
        size_k: int,
        start: np.ndarray,
        end: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
    ) -> int:
        """The offset for the ``k``-th buffer of an order (steps ``start_k..end_k``, ``size_k``
        bytes), given the ``k`` placed before it: ``start``, ``end``, ``low`` (offset) and
        ``high`` (offset + size) by position in the order."""
        self.work += 1
        alive = ((start[:k] <= end_k) & (end[:k] >= start_k)).nonzero()[0]
        if not len(alive):
            return 0
        if len(alive) >= _NUMPY_GAP_SEARCH_FROM:
            lows, highs = low[alive], high[alive]
            by_offset = lows.argsort(kind="stable")
            lows, highs = lows[by_offset], highs[by_offset]
            tops = np.maximum.accumulate(highs)
            # Gap j runs from the top of everything below buffer j up to buffer j's offset.
            floors = np.concatenate(([0], tops[:-1]))
            gaps = lows - floors
            fits = (gaps >= size_k).nonzero()[0]
            if len(fits):
                return int(floors[fits[gaps[fits].argmin()]])
            return int(tops[-1])
        floor, best, best_gap = 0, -1, 0
        for below, above in sorted(zip(low[alive].tolist(), high[alive].tolist())):
            gap = below - floor
            if gap >= size_k and (best < 0 or gap < best_gap):
                best, best_gap = floor, gap
            floor = max(floor, above)
        return floor if best < 0 else best

    def replace(self, order: np.ndarray, offsets: np.ndarray, moved: tuple[int, ...]) -> np.ndarray:
        """Offsets for ``order``, which differs from the order behind ``offsets`` only in the
        buffers at the positions ``moved``.

        A buffer's best fit depends only on the buffers placed before it and alive alongside
        it, and on their offsets. So only the moved buffers, and the buffers alive alongside
        one that moved or whose offset changed, are placed again; the others keep their
        offset.
        """
        start, end, size = self.start[order], self.end[order], self.size[order]
        low = offsets[order]
        high = low + size
        offsets = offsets.copy()
        first = min(moved)
        queue = sorted(moved)  # a heap of positions still to place, lowest first
        queued = set(queue)

        def enqueue_alive_after(k: int, buffer: int) -> None:
            s, e = int(self.start[buffer]), int(self.end[buffer])
            for j in (k + 1 + ((start[k + 1 :] <= e) & (end[k + 1 :] >= s)).nonzero()[0]).tolist():
                if j not in queued:
                    queued.add(j)
                    heapq.heappush(queue, j)

        for k in moved:  # every buffer that the moved ones now precede, or no longer precede
            enqueue_alive_after(first, int(order[k]))
        while queue:
            k = heapq.heappop(queue)
            z = int(size[k])
            offset = self._best_fit(k, int(start[k]), int(end[k]), z, start, end, low, high)
            if offset != low[k]:
                low[k], high[k] = offset, offset + z
                offsets[order[k]] = offset
                enqueue_alive_after(k, int(order[k]))
        return offsets

    def arena(self, offsets: np.ndarray) -> int:
        return int((offsets + self.size).max()) if len(self.size) else 0

    def _score(self, offsets: np.ndarray) -> tuple[int, int]:
        """The arena, then how many buffers reach it: lower is better."""
        tops = offsets + self.size
        arena = int(tops.max())
        return arena, int(np.count_nonzero(tops == arena))

    def hill_climb(self, order: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Offsets improved by swapping buffers near the arena's top; never a larger arena."""
        if len(order) < 2:
            return offsets
        rng = random.Random(HILL_CLIMB_SEED)
        bound = self.peak_live_bytes()
        budget = self.work + max(HILL_CLIMB_MIN_WORK, 2 * len(order))
        score = self._score(offsets)
        while score[0] > bound and self.work < budget:
            self.work += 1  # a round that finds nothing to swap still spends budget
            tops = (offsets + self.size)[order]
            at_top = np.flatnonzero(tops == score[0])
            top = int(at_top[rng.randrange(len(at_top))])
            neighbours = self._alive_alongside(order, top)
            neighbours = neighbours[neighbours != top]
            if not len(neighbours):
                break  # unreachable: alone at its steps, it would sit at 0, within the bound
            first = int(neighbours[rng.randrange(len(neighbours))])
            if rng.random() < 0.5:
                second = top
            else:
                around = self._alive_alongside(order, first)
                second = int(around[rng.randrange(len(around))])
            if first == second:
                continue
            trial = order.copy()
            trial[first], trial[second] = trial[second], trial[first]
            trial_offsets = self.replace(trial, offsets, (first, second))
            trial_score = self._score(trial_offsets)
            if trial_score <= score:
                order, offsets, score = trial, trial_offsets, trial_score
        return offsets

    def _alive_alongside(self, order: np.ndarray, k: int) -> np.ndarray:
        """Positions in ``order`` of the buffers alive at some step of the ``k``-th's life."""
        b = order[k]
        return np.flatnonzero(
            (self.start[order] <= self.end[b]) & (self.end[order] >= self.start[b])
        )

    def plan(self, strategy: str, offsets: np.ndarray) -> MemoryPlan:
        placements = tuple(
            Placement(b.name, int(offsets[i]), int(self.size[i]), b.start, b.end)
            for i, b in enumerate(self.buffers)
        )
        arena = max((p.offset + p.size for p in placements), default=0)
        return MemoryPlan(strategy, arena, placements)
