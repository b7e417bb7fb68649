"""Memory behaviour of the compiled Value: not tracked by the cyclic GC,
deep graphs build, back-propagate and free without recursion, memory comes
back after graphs are dropped, references are neither leaked nor released
early."""

import gc
import math
import sys
import tracemalloc

import pytest

import fastgrad
from fastgrad import Value

DEEP = 10**6


# ---------------------------------------------------------------------------
# Not tracked by the cyclic GC
# ---------------------------------------------------------------------------


def test_values_are_not_gc_tracked():
    a, b = Value(1.5), Value(-0.5)
    made = [
        a,
        Value(True),
        a + b,
        a - 1,
        2 - a,
        a * b,
        a * 3,
        a / b,
        1 / a,
        a**b,
        a**2,
        2**a,
        -a,
        abs(a),
        a.relu(),
        a.tanh(),
        a.sigmoid(),
        a.exp(),
        a.log(),
        a.abs(),
        fastgrad.sum([a, b, 1.0]),
        fastgrad.dot([a, b], [b, a]),
        fastgrad.dot([a, b], [1.0, 2.0]),
    ]
    with fastgrad.no_grad():
        made.append(a * b)
    import copy
    import pickle

    made.append(copy.deepcopy(a))
    made.append(pickle.loads(pickle.dumps(b)))
    made.extend((a * b)._prev)
    made.extend((a * 2)._prev)  # wrapped constant
    for v in made:
        assert isinstance(v, Value)
        assert gc.is_tracked(v) is False, v


def test_a_node_is_one_small_object():
    # object header + data, grad, two parent slots, op and mark; no GC header,
    # no __dict__ (sys.getsizeof counts a GC header for tracked types)
    assert sys.getsizeof(Value(1.0)) <= 64
    assert sys.getsizeof(Value(1.0) * Value(2.0)) <= 64
    assert not hasattr(Value(1.0), "__dict__")


def test_building_graphs_triggers_no_gc_collections():
    # Untracked objects do not count towards the GC's generation-0 threshold.
    gc.collect()
    before = gc.get_stats()[0]["collections"]
    x = Value(0.5)
    y = x
    for _ in range(50_000):
        y = y * 1.0 + x
    after = gc.get_stats()[0]["collections"]
    assert after - before <= 1
    del y


# ---------------------------------------------------------------------------
# Deep chains: build, backward, free, in this process
# ---------------------------------------------------------------------------

CHAINS = {
    # name: (step, expected d(root)/d(x))
    "add_const": (lambda y, x: y + 1.0, 1.0),
    "mul_const": (lambda y, x: y * 1.0, 1.0),
    "add_leaf": (lambda y, x: y + x, float(DEEP + 1)),  # root = (DEEP + 1) * x
    "neg": (lambda y, x: -y, 1.0),  # an even number of negations
    "sum": (lambda y, x: fastgrad.sum([y]), 1.0),
    "dot": (lambda y, x: fastgrad.dot([y], [1.0]), 1.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_deep_chain_builds_backprops_and_frees(name):
    step, expected = CHAINS[name]
    assert DEEP % 2 == 0
    x = Value(0.5)
    refs = sys.getrefcount(x)
    y = x
    for _ in range(DEEP):
        y = step(y, x)
    y.backward()
    assert x.grad == expected
    y.backward()
    assert x.grad == 2 * expected  # leaf accumulates; 10**6 interiors recomputed
    del y  # frees 10**6 nodes: must not recurse (no RecursionError, no crash)
    assert sys.getrefcount(x) == refs  # every reference to x was released
    # the engine is still healthy afterwards
    z = x * 3
    z.backward()
    assert x.grad == 2 * expected + 3.0


@pytest.mark.slow
def test_deep_chain_of_binary_nodes_values():
    x = Value(1.0)
    refs = sys.getrefcount(x)
    y = Value(0.0)
    for _ in range(DEEP):
        y = y + x
    assert y.data == float(DEEP)
    y.backward()
    assert x.grad == float(DEEP)
    del y
    assert sys.getrefcount(x) == refs


@pytest.mark.slow
def test_deep_chain_dropped_from_interior_reference_order():
    # Drop the root first, then an interior node that keeps half the chain.
    x = Value(2.0)
    refs = sys.getrefcount(x)
    y = x
    mid = None
    for i in range(DEEP):
        y = y + 1.0
        if i == DEEP // 2:
            mid = y
    del y
    assert mid.data == 2.0 + DEEP // 2 + 1
    mid.backward()
    assert x.grad == 1.0
    del mid
    assert sys.getrefcount(x) == refs


# ---------------------------------------------------------------------------
# Memory comes back
# ---------------------------------------------------------------------------


def _build_chain(n):
    x = Value(0.5)
    y = x
    for _ in range(n):
        y = y + 1.0
    return x, y


@pytest.mark.slow
def test_memory_returns_after_dropping_big_graphs():
    gc.collect()
    tracemalloc.start()
    try:
        # warm up the engine's scratch buffers and allocator before the baseline
        x, y = _build_chain(1000)
        y.backward()
        del x, y
        baseline = tracemalloc.get_traced_memory()[0]
        peaks, residues = [], []
        for _ in range(3):
            tracemalloc.reset_peak()
            x, y = _build_chain(DEEP)
            y.backward()
            assert x.grad == 1.0
            assert y.data == 0.5 + DEEP
            held = tracemalloc.get_traced_memory()[0] - baseline
            del x, y
            current, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - baseline)
            residues.append(current - baseline)
            # the graph really was held, at one small object per node (56
            # bytes on 64-bit builds; a GC header would make it 72)
            assert DEEP * 40 < held < DEEP * 64, held / DEEP
    finally:
        tracemalloc.stop()
    margin = 256 * 1024  # allocator slack, tiny next to ~56 MB per graph
    # what stays is the engine's bounded cache of freed Values (~7 MiB), not
    # the graph, and it does not grow from one graph to the next
    cache = fastgrad._engine.cache_limit_bytes()
    assert 0 < cache <= 8 * 2**20
    assert all(r < cache + margin for r in residues), residues
    assert max(residues) - min(residues) < margin, residues
    # the peak of each iteration is the same graph again, not a growing pile
    # (the first may be lower by up to the cache: it starts with the cache empty)
    assert max(peaks) < peaks[0] * 1.02 + cache + margin, peaks
    assert max(peaks[1:]) < min(peaks[1:]) * 1.02 + margin, peaks


@pytest.mark.slow
def test_empty_cache_gives_everything_back():
    gc.collect()
    fastgrad.empty_cache()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        x, y = _build_chain(DEEP // 4)
        y.backward()
        del x, y
        kept = tracemalloc.get_traced_memory()[0] - baseline
        released = fastgrad.empty_cache()
        residue = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    cache = fastgrad._engine.cache_limit_bytes()
    assert cache - 64 * 1024 < kept <= cache + 64 * 1024   # the cache was full...
    assert released >= cache                                # ...and was released,
    assert residue < 64 * 1024, residue                     # memory came back
    # and the engine still works from an empty cache
    a = fastgrad.Value(2.0)
    (a * a).backward()
    assert a.grad == 4.0


def test_many_small_graphs_do_not_leak():
    gc.collect()
    tracemalloc.start()
    try:
        x = Value(0.3)
        w = [Value(0.1 * i) for i in range(8)]

        def step():
            h = fastgrad.dot(w, [x] * 8).tanh()
            s = fastgrad.sum([h, x * 2, (x - 1) ** 2, 1.0 / (x + 2), x.exp().log()])
            s.backward()

        for _ in range(200):
            step()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(5000):
            step()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown


# ---------------------------------------------------------------------------
# Wide graphs
# ---------------------------------------------------------------------------

WIDE = 10**5


def test_wide_sum_of_leaves():
    xs = [Value(float(i)) for i in range(WIDE)]
    probe = xs[7]
    refs = sys.getrefcount(probe)
    s = fastgrad.sum(xs)
    assert s.data == float(sum(range(WIDE)))
    assert len(s._prev) == WIDE
    assert sys.getrefcount(probe) == refs + 1
    s.backward()
    assert all(x.grad == 1.0 for x in xs)
    del s
    assert sys.getrefcount(probe) == refs
    assert all(x.data == float(i) for i, x in enumerate(xs))


def test_wide_dot_frees_both_sides():
    ws = [Value(1.0) for _ in range(WIDE)]
    xs = [Value(2.0) for _ in range(WIDE)]
    w0, xn = ws[0], xs[-1]
    refs = (sys.getrefcount(w0), sys.getrefcount(xn))
    d = fastgrad.dot(ws, xs)
    dc = fastgrad.dot(ws, [3.0] * WIDE)
    assert d.data == 2.0 * WIDE and dc.data == 3.0 * WIDE
    (d + dc).backward()
    assert all(w.grad == 5.0 for w in ws)
    assert all(x.grad == 1.0 for x in xs)
    del d, dc
    assert (sys.getrefcount(w0), sys.getrefcount(xn)) == refs


def test_wide_node_of_unique_interior_parents_frees_all():
    # Dropping the root releases 10**5 parents that die with it (more than the
    # engine keeps on its pending stack between releases), then their leaves.
    gc.collect()
    tracemalloc.start()
    try:
        x = Value(1.0)
        base = tracemalloc.get_traced_memory()[0]
        refs = sys.getrefcount(x)
        s = fastgrad.sum([(x * float(i)).tanh() for i in range(WIDE)])
        s.backward()
        expected = math.fsum(i * (1.0 - math.tanh(i) ** 2) for i in range(WIDE))
        assert x.grad == pytest.approx(expected, rel=1e-12)
        assert sys.getrefcount(x) == refs + WIDE
        del s
        assert sys.getrefcount(x) == refs
        # all 2 * 10**5 nodes are gone but for the engine's bounded cache
        cache = fastgrad._engine.cache_limit_bytes()
        assert tracemalloc.get_traced_memory()[0] - base < cache + 256 * 1024
        # and again, with dot over fresh interior nodes on both sides:
        # d = sum (x + 1) * 2x, d' = sum 4x + 2 = 6 per pair at x = 1
        x.grad = 0.0
        d = fastgrad.dot([x + 1.0 for _ in range(WIDE)], [x * 2.0 for _ in range(WIDE)])
        assert d.data == 4.0 * WIDE
        d.backward()
        assert x.grad == 6.0 * WIDE
        assert sys.getrefcount(x) == refs + 2 * WIDE
        del d
        assert sys.getrefcount(x) == refs
        assert tracemalloc.get_traced_memory()[0] - base < cache + 256 * 1024
        fastgrad.empty_cache()          # and without the cache, nothing is left
        assert tracemalloc.get_traced_memory()[0] - base < 256 * 1024
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------
# References kept by interior nodes
# ---------------------------------------------------------------------------


def test_interior_reference_keeps_parents_alive():
    a, b = Value(2.0), Value(-3.0)
    m = a * b + 1.0  # -5
    root = (m * m).tanh()
    del a, b, root
    gc.collect()
    (prod,) = [p for p in m._prev if not p.is_leaf]
    assert prod._op == "*" and prod.data == -6.0
    parents = sorted(p.data for p in prod._prev)
    assert parents == [-3.0, 2.0]
    m.backward()
    grads = {p.data: p.grad for p in prod._prev}
    assert grads == {2.0: -3.0, -3.0: 2.0}


def test_interior_reference_into_long_chain_keeps_its_ancestors():
    n = 20_000
    x = Value(0.0)
    y = x
    keep = None
    for i in range(1, n + 1):
        y = y + 1.0
        if i == n // 2:
            keep = y
    del x, y  # drops the upper half of the chain, iteratively
    gc.collect()
    assert keep.data == float(n // 2)
    # walk down to the leaf: every ancestor is alive with its value
    node, depth = keep, n // 2
    while not node.is_leaf:
        assert node.data == float(depth)
        assert node._op == "+"
        (node,) = [p for p in node._prev if p.data != 1.0 or not p.is_leaf]
        depth -= 1
    assert depth == 0 and node.data == 0.0
    keep.backward()
    assert node.grad == 1.0


def test_parent_values_survive_while_children_live():
    leaves = [Value(float(i)) for i in range(100)]
    nodes = [fastgrad.sum(leaves[i : i + 10]) for i in range(0, 100, 10)]
    top = fastgrad.dot(nodes, nodes)
    del leaves, nodes
    gc.collect()
    expected = sum(float(sum(range(i, i + 10))) ** 2 for i in range(0, 100, 10))
    assert top.data == expected
    top.backward()
    kids = top._prev
    assert len(kids) == 10
    for k in kids:
        assert k.grad == 2 * k.data
        assert all(leaf.grad == 2 * k.data for leaf in k._prev)
