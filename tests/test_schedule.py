"""schedule: hand-built graphs with hand-computed optimal peaks, and random DAGs."""

from __future__ import annotations

import itertools

import onnx
from conftest import SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from hwopt.feeds.inputs import resolve_input_specs
from hwopt.memory.liveness import MemoryGraph, build_memory_graph, peak_live_bytes
from hwopt.memory.schedule import best_schedule, cut_nodes, schedule_greedy, schedule_segmented
from hwopt.model.shapes import infer_tensor_info


def _graph(preds: list[set[int]], sizes: list[int]) -> MemoryGraph:
    """Node i allocates buffer t<i> of sizes[i] bytes and reads its predecessors' buffers."""
    n = len(preds)
    return MemoryGraph(
        labels=[f"n{i}" for i in range(n)],
        preds=[frozenset(p) for p in preds],
        allocs=[(f"t{i}",) for i in range(n)],
        reads=[tuple(f"t{p}" for p in sorted(preds[i])) for i in range(n)],
        sizes={f"t{i}": sizes[i] for i in range(n)},
        unknown=[], input_bytes=0, output_bytes=0, weight_bytes=0, aliases={},
    )


def test_fan_out_runs_the_big_branch_first() -> None:
    # r(1) feeds two branches; branch A: a1(10) -> a2(1); branch B: b1(2) -> b2(2); j joins.
    # A first (r, a1, a2, b1, b2, j): the peak is at a2, r + a1 + a2 = 12; B is small after.
    # B first (r, b1, b2, a1, a2, j): at a1, r + b2 + a1 = 13. So A first is best.
    g = _graph([set(), {0}, {1}, {0}, {3}, {2, 4}], [1, 10, 1, 2, 2, 1])
    assert peak_live_bytes(g, [0, 1, 2, 3, 4, 5]) == 12
    assert peak_live_bytes(g, [0, 3, 4, 1, 2, 5]) == 13
    winner, _ = best_schedule(g, [0, 3, 4, 1, 2, 5])
    assert winner.peak == 12


def test_wide_fan_out_by_hand() -> None:
    # r(1) feeds 4 branches i = 0..3, each x_i (8) -> y_i (1); all y join in j (1).
    # All x's first peaks when the 4th x runs: r + 4 x = 33. Finishing each branch before the
    # next peaks in the last branch: r + 3 y + x3 = 12 when x3 runs, then r is freed and
    # 3 y + x3 + y3 = 12 when y3 runs.
    preds = [set()]
    sizes = [1]
    for _ in range(4):
        preds.append({0})
        sizes.append(8)
    for i in range(4):
        preds.append({1 + i})
        sizes.append(1)
    preds.append({5, 6, 7, 8})
    sizes.append(1)
    g = _graph(preds, sizes)
    breadth_first = list(range(10))
    assert peak_live_bytes(g, breadth_first) == 33
    winner, _ = best_schedule(g, breadth_first)
    assert winner.peak == 12 and g.is_topological(winner.order)


def test_inception_sample_by_hand() -> None:
    # inception1 in exporter order peaks at branch C's expand BatchNorm: the block input (48
    # channels), branch A's and B's outputs (160, 112), C's expand conv and its BN output
    # (288 + 288) are live: 896 channels x 24 x 24 x 4 B = 2,064,384 B. Running C first peaks
    # at 48 + 288 + 288 = 624 channels (tied with the concat, 2 x 312): 1,437,696 B.
    model = onnx.load(str(SAMPLES / "inception_tiny.onnx"))
    specs = resolve_input_specs(model.graph)
    g = build_memory_graph(model, infer_tensor_info(model, specs).tensors)
    assert peak_live_bytes(g) == 896 * 24 * 24 * 4
    winner, _ = best_schedule(g)
    assert winner.peak == 624 * 24 * 24 * 4
    assert winner.peak <= 0.8 * peak_live_bytes(g)


@st.composite
def dags(draw, max_nodes: int = 24):
    n = draw(st.integers(2, max_nodes))
    preds = [set()]
    for i in range(1, n):
        preds.append(set(draw(st.lists(st.integers(0, i - 1), max_size=3))))
    sizes = draw(st.lists(st.sampled_from([0, 1, 2, 5, 16, 100]), min_size=n, max_size=n))
    return _graph(preds, sizes)


def _brute_force(g: MemoryGraph) -> int:
    best = None
    for order in itertools.permutations(range(len(g))):
        if g.is_topological(order):
            peak = peak_live_bytes(g, order)
            best = peak if best is None else min(best, peak)
    return best


@settings(max_examples=60, deadline=None, derandomize=True)
@given(dags(max_nodes=7))
def test_segmented_search_is_optimal_on_small_graphs(g: MemoryGraph) -> None:
    assert schedule_segmented(g).peak == _brute_force(g)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(dags(), st.booleans())
def test_schedules_are_valid_and_never_worse_than_the_input(g: MemoryGraph, small_budget: bool) -> None:
    budget = 8 if small_budget else 50_000  # a tiny budget forces the beam search
    winner, candidates = best_schedule(g, state_budget=budget, beam_width=4)
    for schedule in candidates:
        assert g.is_topological(schedule.order)
        assert schedule.peak == peak_live_bytes(g, schedule.order)
    assert winner.peak <= peak_live_bytes(g)
    assert winner.peak == min(c.peak for c in candidates)
    assert g.is_topological(schedule_greedy(g).order)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(dags())
def test_cut_nodes_relate_to_every_node(g: MemoryGraph) -> None:
    order = g.file_order()
    cuts = set(cut_nodes(g, order))
    for cut in cuts:
        # Every valid order puts all other nodes entirely before or after a cut node.
        for other in range(len(g)):
            if other == cut:
                continue
            before = _is_ancestor(g, other, cut)
            after = _is_ancestor(g, cut, other)
            free = not g.preds[other] and not g.allocs[other] and not g.reads[other]
            assert before or after or free


def _is_ancestor(g: MemoryGraph, a: int, b: int) -> bool:
    stack, seen = [b], set()
    while stack:
        v = stack.pop()
        for p in g.preds[v]:
            if p == a:
                return True
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return False
