"""fastgrad against micrograd and PyTorch, every engine in the same run.

    python bench/run.py [--json] [--quick] [--repeat N] [--only W1 [W2 ...]]

A plain script in the style of msgspec's benchmarks: each workload times
every engine in this one process and prints a table of medians, with
"fastgrad is Nx faster/slower" ratios beside them (the machine is a shared,
noisy 2-core box, so ratios measured in the same run are what count). As in
orjson's benchmarks, each row also records whether the engine's result was
correct, checked against a reference. ``--json`` prints the same figures as
JSON (plus the raw samples) instead of the tables; progress goes to stderr.

Engines (a missing one is reported as absent, never a crash):

  fastgrad             this package
  micrograd            micrograd 0.1.0 as shipped: the cyclic GC enabled, as
                       users run it (its closures form reference cycles, so
                       most of its time is spent in the GC)
  micrograd, gc off    the same, with gc.disable() during the timed region;
                       gc.enable() and gc.collect() afterwards, untimed
  torch                PyTorch on CPU, one thread

Workloads live in the WORKLOADS registry (see ``@workload``); add one by
writing a function that returns a ``Table``.

The budgets of /work/shared/DESIGN.md ("Speed and memory budgets") are
printed beside the measured figures with pass/MISS marks. They are reported,
never asserted: this script exits 0 whatever the figures.
"""

from __future__ import annotations

import os

# Single-threaded throughout: numpy's OpenBLAS (imported by fastgrad) would
# otherwise start a worker that spins on the second of this box's two cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import gc
import json
import math
import platform
import random
import shlex
import statistics
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

perf_counter = time.perf_counter

# micrograd's backward() builds its topological order recursively; W1's
# graph is ~630 levels deep and W2's ~350, under the default limit of 1000,
# but leave room so a bigger workload reports a figure rather than a crash.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

REL_TOL = 1e-9          # results must agree with the reference this closely
SEED = 1337


# ===========================================================================
# Engines
# ===========================================================================

@dataclass
class Engine:
    key: str                    # stable id, used in JSON
    label: str                  # as printed in tables
    module: Any = None          # fastgrad / micrograd.engine / torch
    version: str = ""
    gc_off: bool = False        # gc.disable() during the timed region
    absent: str | None = None   # why the engine cannot run

    @property
    def Value(self):
        """The engine's micrograd-style scalar class (not for torch)."""
        return self.module.Value


def _micrograd_tanh(self):
    # micrograd 0.1.0 (PyPI) has no tanh(). This is the one from micrograd's
    # lecture (nn-zero-to-hero), in the engine's own closure style, with
    # math.tanh instead of the exp formula (which overflows for |x| > 355).
    t = math.tanh(self.data)
    out = type(self)(t, (self,), "tanh")

    def _backward():
        self.grad += (1 - t**2) * out.grad
    out._backward = _backward

    return out


def load_engines() -> list[Engine]:
    engines = []

    try:
        import fastgrad
        engines.append(Engine("fastgrad", "fastgrad", fastgrad, fastgrad.__version__))
    except Exception as e:          # not built, or mid-rebuild
        engines.append(Engine("fastgrad", "fastgrad", absent=_why(e)))

    try:
        import micrograd.engine
        from importlib.metadata import version
        if not hasattr(micrograd.engine.Value, "tanh"):
            micrograd.engine.Value.tanh = _micrograd_tanh
        v = version("micrograd")
        engines.append(Engine("micrograd", "micrograd", micrograd.engine, v))
        engines.append(Engine("micrograd_gc_off", "micrograd, gc off",
                              micrograd.engine, v, gc_off=True))
    except Exception as e:
        engines.append(Engine("micrograd", "micrograd", absent=_why(e)))
        engines.append(Engine("micrograd_gc_off", "micrograd, gc off", absent=_why(e)))

    try:
        import torch
        torch.set_num_threads(1)
        engines.append(Engine("torch", "torch", torch, torch.__version__))
    except Exception as e:
        engines.append(Engine("torch", "torch", absent=_why(e)))

    try:
        import numpy  # noqa: F401 - W2's data; imported before the freeze below
    except Exception:
        pass
    # Move every object alive after the imports (torch alone brings ~150k
    # GC-tracked ones) to the GC's permanent generation. Otherwise each full
    # collection inside micrograd's timings also walks torch's objects (about
    # +10% on micrograd's W2 step), and a gc.collect() before a run writes
    # every one of their GC headers, evicting the caches (+5 ns/op on
    # fastgrad's build, +6 ns/node on its backward). With the freeze each
    # engine's GC cost is its own, whichever engines happen to be installed.
    gc.collect()
    gc.freeze()
    return engines


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class gc_mode:
    """gc.disable() inside the block if `off`; afterwards gc.enable() and a
    full collection (callers keep this outside their timing)."""

    def __init__(self, off: bool):
        self.off = off

    def __enter__(self):
        if self.off:
            gc.disable()

    def __exit__(self, *exc):
        if self.off:
            gc.enable()
        return False


def collect():
    gc.collect()


def progress(msg: str):
    print(msg, file=sys.stderr, flush=True)


# ===========================================================================
# Results: tables, budgets, rendering
# ===========================================================================

@dataclass
class Column:
    key: str                    # figure name in Row.figures
    header: str
    digits: int = 3             # significant digits printed
    ratio: bool = False         # follow with a "fastgrad is Nx faster" column


@dataclass
class Row:
    engine: str
    label: str
    absent: str | None = None
    error: str | None = None
    runs: int = 0
    figures: dict = field(default_factory=dict)     # medians (and other figures)
    samples: dict = field(default_factory=dict)     # raw timings, seconds
    ratios: dict = field(default_factory=dict)      # figure -> this / fastgrad
    correct: bool | None = None                     # None: reference, or unchecked
    check: str = ""                                 # what the correct column says


@dataclass
class Budget:
    name: str
    limit: float
    op: str                     # "<=" or ">="
    unit: str
    measured: float | None
    aim: float | None = None
    detail: str = ""

    @property
    def passed(self) -> bool | None:
        if self.measured is None or math.isnan(self.measured):
            return None
        return self.measured <= self.limit if self.op == "<=" else self.measured >= self.limit


@dataclass
class Table:
    key: str
    title: str
    description: list[str]
    columns: list[Column]
    rows: list[Row]
    budgets: list[Budget] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, engine: str) -> Row | None:
        for r in self.rows:
            if r.engine == engine:
                return r
        return None

    def ok(self, engine: str) -> bool:
        r = self.row(engine)
        return r is not None and r.absent is None and r.error is None

    def fill_ratios(self):
        """ratios[fig] = engine's figure / fastgrad's: how many times faster
        (or, below 1, slower) fastgrad is. All ratio columns are costs."""
        base = self.row("fastgrad")
        for c in self.columns:
            if not c.ratio:
                continue
            b = base.figures.get(c.key) if base and self.ok("fastgrad") else None
            for r in self.rows:
                v = r.figures.get(c.key)
                if b and v is not None:
                    r.ratios[c.key] = v / b

    def to_json(self) -> dict:
        return {
            "key": self.key, "title": self.title, "description": self.description,
            "rows": [asdict(r) for r in self.rows],
            "budgets": [dict(asdict(b), passed=b.passed) for b in self.budgets],
            "notes": self.notes,
        }


def fmt_num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    if 0.995 <= r <= 1.005:
        return "1.00x"
    if r >= 1:
        return f"{fmt_num(r)}x faster"
    return f"{fmt_num(1 / r)}x slower"


def render(table: Table) -> str:
    head = ["engine"]
    for c in table.columns:
        head.append(c.header)
        if c.ratio:
            head.append("fastgrad is")
    head += ["runs", "correct"]
    body = []
    for r in table.rows:
        if r.absent or r.error:
            cells = [r.label] + ["-"] * (len(head) - 3) + ["-"]
            cells.append(("absent: " + r.absent) if r.absent else ("error: " + r.error))
        else:
            cells = [r.label]
            for c in table.columns:
                cells.append(fmt_num(r.figures.get(c.key), c.digits))
                if c.ratio:
                    cells.append(fmt_ratio(r.ratios.get(c.key)) if r.engine != "fastgrad" else "")
            cells.append(str(r.runs))
            cells.append(r.check)
        body.append(cells)

    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
    numeric = [False] + [True] * (len(head) - 2) + [False]

    def line(cells):
        out = []
        for i, (s, w) in enumerate(zip(cells, widths)):
            out.append(s.rjust(w) if numeric[i] else s.ljust(w))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    lines = [f"{table.key}: {table.title}"]
    lines += ["  " + d for d in table.description]
    lines += ["", line(head), sep] + [line(b) for b in body]
    if table.budgets:
        lines += ["", "budgets (DESIGN.md; reported, not asserted):"]
        bw = max(len(b.name) for b in table.budgets)
        for b in table.budgets:
            mark = {True: "pass", False: "MISS", None: "n/a"}[b.passed]
            aim = f" (aim {b.aim:g})" if b.aim is not None else ""
            want = f"{b.op} {b.limit:g} {b.unit}{aim}"
            got = fmt_num(b.measured) if b.measured is not None else "-"
            extra = f"  {b.detail}" if b.detail else ""
            lines.append(f"  {b.name.ljust(bw)}  {want:<31} measured {got:>6}  {mark}{extra}")
    if table.notes:
        lines += ["", "notes:"] + ["  - " + n for n in table.notes]
    return "\n".join(lines)


# ===========================================================================
# Correctness helpers
# ===========================================================================

def max_rel_err(got: list[float], ref: list[float]) -> float:
    """Largest elementwise |a - b| / max(|a|, |b|) (0 where both are 0)."""
    worst = 0.0
    if len(got) != len(ref):
        return math.inf
    for a, b in zip(got, ref):
        if a == b:
            continue
        d = abs(a - b)
        m = max(abs(a), abs(b))
        e = d / m if m else math.inf
        if not e <= worst:          # also catches NaN
            worst = e if not math.isnan(e) else math.inf
    return worst


def judge(row: Row, got: list[float] | None, ref: list[float] | None, is_ref: bool):
    if is_ref:
        row.correct, row.check = None, "reference"
        return
    if got is None or ref is None:
        row.correct, row.check = None, "unchecked"
        return
    err = max_rel_err(got, ref)
    row.correct = err <= REL_TOL
    row.figures["max_rel_err"] = err
    row.check = f"{'ok' if row.correct else 'WRONG'} ({err:.0e})" if err else "ok (exact)"


# ===========================================================================
# Workload registry
# ===========================================================================

@dataclass
class Config:
    repeat: int                 # timed runs of a cheap cell
    slow_repeat: int            # timed runs of an expensive cell (seconds per run)
    quick: bool


@dataclass
class Workload:
    key: str
    title: str
    run: Callable[[Config, list[Engine]], Table]


WORKLOADS: dict[str, Workload] = {}


def workload(key: str, title: str):
    def register(fn):
        WORKLOADS[key] = Workload(key, title, fn)
        return fn
    return register


def guarded(row: Row, fn: Callable[[], None]):
    """Run one cell; an exception becomes the row's error, not a crash."""
    try:
        fn()
    except Exception as e:          # noqa: BLE001 - a benchmark reports, never dies
        row.error = _why(e)
        gc.enable()
        collect()


# ===========================================================================
# W1: a scalar graph of ~10**5 ops (mul, add, tanh), then backward
# ===========================================================================
#
# 330 independent chains of 100 steps y = (y * w_i + b_i).tanh() over shared
# leaves w, b, summed with +. Not one 10**5-deep chain: there, contracting
# derivatives drive the gradient into subnormal floats, where it stays (round
# to nearest), and every engine's backward then measures the FPU's subnormal
# slow path rather than the engine. The weights are chosen so that the
# smallest gradient in the graph stays a normal float (checked below).

W1_CHAINS = 330
W1_STEPS = 100
W1_OPS = W1_CHAINS * W1_STEPS * 3 + (W1_CHAINS - 1)
W1_LEAVES = W1_CHAINS + 2 * W1_STEPS
W1_NODES = W1_OPS + W1_LEAVES


def w1_numbers(seed: int = SEED):
    rng = random.Random(seed)
    ws = [rng.choice((-1.0, 1.0)) * rng.uniform(0.5, 1.5) for _ in range(W1_STEPS)]
    bs = [rng.uniform(-0.5, 0.5) for _ in range(W1_STEPS)]
    xs = [rng.uniform(-1.0, 1.0) for _ in range(W1_CHAINS)]
    return xs, ws, bs


def w1_build(X, W, B):
    """The W1 graph. The same code for every engine; only the leaves differ."""
    ends = []
    for x in X:
        y = x
        for w, b in zip(W, B):
            y = (y * w + b).tanh()
        ends.append(y)
    total = ends[0]
    for e in ends[1:]:
        total = total + e
    return total


def w1_leaf_factory(engine: Engine):
    if engine.key == "torch":
        torch = engine.module

        def leaf(v):
            return torch.tensor(v, dtype=torch.float64, requires_grad=True)

        def grad(v):
            return v.grad.item()

        def value(v):
            return v.item()
        return leaf, grad, value
    return engine.Value, (lambda v: float(v.grad)), (lambda v: float(v.data))


def w1_once(engine: Engine, nums, want_result: bool):
    """Build and backward once; returns (build s, backward s, result or None)."""
    leaf, grad, value = w1_leaf_factory(engine)
    xs, ws, bs = nums
    X = [leaf(v) for v in xs]
    W = [leaf(v) for v in ws]
    B = [leaf(v) for v in bs]
    collect()
    with gc_mode(engine.gc_off):
        t0 = perf_counter()
        root = w1_build(X, W, B)
        t1 = perf_counter()
        root.backward()
        t2 = perf_counter()
    result = None
    if want_result:
        result = [value(root)] + [grad(v) for v in X + W + B]
    del root, X, W, B               # freeing is not timed
    collect()
    return t1 - t0, t2 - t1, result


def w1_bytes_per_node(engine: Engine, nums) -> float:
    """tracemalloc: memory traced after building minus before, per new node."""
    leaf, _, _ = w1_leaf_factory(engine)
    xs, ws, bs = nums
    X = [leaf(v) for v in xs]
    W = [leaf(v) for v in ws]
    B = [leaf(v) for v in bs]
    # Empty the type's free list (fastgrad keeps up to 1024 dead Values):
    # nodes built from it would reuse memory allocated before tracing began.
    pad = [leaf(0.0) for _ in range(4096)]
    collect()
    with gc_mode(True):
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            root = w1_build(X, W, B)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    del root, pad, X, W, B
    collect()
    return (after - before) / W1_OPS


@workload("W1", "scalar graph of ~10**5 ops (mul, add, tanh), then backward")
def w1(cfg: Config, engines: list[Engine]) -> Table:
    nums = w1_numbers()
    table = Table(
        "W1", WORKLOADS["W1"].title,
        [f"{W1_CHAINS} chains of {W1_STEPS} steps y = (y * w_i + b_i).tanh() over "
         f"shared leaves w, b; chain ends summed with +",
         f"{W1_OPS:,} ops, {W1_NODES:,} nodes with the {W1_LEAVES} leaves; "
         f"torch: the same graph of 0-d float64 tensors",
         "build ns/op: building time / ops; backward ns/node: backward() time / nodes; "
         "bytes/node: tracemalloc, after build minus before, / ops"],
        [Column("build_ns_per_op", "build ns/op", ratio=True),
         Column("backward_ns_per_node", "backward ns/node", ratio=True),
         Column("bytes_per_node", "bytes/node")],
        [Row(e.key, e.label, absent=e.absent) for e in engines])

    results: dict[str, list[float]] = {}
    memory_by_module: dict[int, float] = {}
    slow = {"micrograd", "micrograd_gc_off", "torch"}

    for e in engines:
        row = table.row(e.key)
        if e.absent:
            continue

        def cell(e=e, row=row):
            runs = cfg.slow_repeat if e.key in slow else cfg.repeat
            progress(f"W1 {e.label}: warmup + {runs} runs")
            _, _, results[e.key] = w1_once(e, nums, want_result=True)
            builds, backs = [], []
            for _ in range(runs):
                tb, tk, _ = w1_once(e, nums, want_result=False)
                builds.append(tb)
                backs.append(tk)
            row.runs = runs
            row.samples = {"build_s": builds, "backward_s": backs}
            row.figures["build_ns_per_op"] = statistics.median(builds) / W1_OPS * 1e9
            row.figures["backward_ns_per_node"] = statistics.median(backs) / W1_NODES * 1e9
            if e.key != "torch":
                mid = id(e.module)
                if mid not in memory_by_module:
                    progress(f"W1 {e.label}: memory (tracemalloc)")
                    memory_by_module[mid] = w1_bytes_per_node(e, nums)
                row.figures["bytes_per_node"] = memory_by_module[mid]
        guarded(row, cell)

    # correctness: root value and all 530 leaf gradients against micrograd
    ref_key = "micrograd" if "micrograd" in results else "fastgrad"
    for r in table.rows:
        if r.engine in results:
            judge(r, results[r.engine], results.get(ref_key), r.engine == ref_key)
    table.fill_ratios()

    # budgets (fastgrad)
    fg = table.row("fastgrad")
    ok = table.ok("fastgrad")
    traced = fg.figures.get("bytes_per_node") if ok else None
    rounded = None
    mem_detail = ""
    if traced is not None:
        size = engines[0].Value.__basicsize__
        slot = -(-size // 16) * 16      # pymalloc hands out 16-byte multiples
        rounded = traced + (slot - size)
        fg.figures["bytes_per_node_pymalloc"] = rounded
        mem_detail = (f"({fmt_num(traced)} traced by tracemalloc; pymalloc rounds "
                      f"each {size}-byte Value up to {slot})")
    table.budgets = [
        Budget("build", 40, "<=", "ns/op", fg.figures.get("build_ns_per_op") if ok else None, 25),
        Budget("backward", 15, "<=", "ns/node",
               fg.figures.get("backward_ns_per_node") if ok else None, 8),
        Budget("memory", 72, "<=", "bytes/node", rounded, 64, mem_detail),
    ]

    if ref_key in results:
        leaf_grads = results[ref_key][1:]
        smallest = min(abs(g) for g in leaf_grads if g != 0.0)
        table.notes.append(
            f"smallest nonzero leaf |gradient| {smallest:.1e} (normal floats: "
            f"{'yes' if smallest >= sys.float_info.min else 'NO, subnormal'}); "
            f"correct = root value and {len(leaf_grads)} leaf gradients within "
            f"{REL_TOL:.0e} relative of {ref_key}")
    if any(e.key == "micrograd" and not e.absent for e in engines):
        table.notes.append("micrograd 0.1.0 has no tanh(); the bench adds the "
                           "lecture's one (closure style, math.tanh)")
    table.notes.append("torch bytes/node: n/a, its tensors are allocated outside "
                       "tracemalloc's view")
    return table


# ===========================================================================
# W2: micrograd's demo training step, plain Value operations only
# ===========================================================================
#
# MLP(2, [16, 16, 1]) on 100 two-moons points; max-margin loss plus L2;
# zero_grad, backward, SGD in Python: micrograd's demo.ipynb, step for step.
# fastgrad and micrograd run literally the same Python code: mlp_classes()
# below is micrograd's nn.py over a given Value class. micrograd's own
# micrograd.nn.MLP, with the same initial weights, is the reference.

W2_POINTS = 100
W2_SIZES = [16, 16, 1]


def two_moons(n: int = W2_POINTS, noise: float = 0.1, seed: int = SEED):
    """sklearn's make_moons(n, noise=0.1), reimplemented with numpy; labels
    -1/+1 as in micrograd's demo. Plain Python floats out."""
    import numpy as np
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.vstack([np.c_[np.cos(t_out), np.sin(t_out)],
                   np.c_[1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5]])
    y = np.r_[np.zeros(n_out), np.ones(n_in)]
    X = X + rng.normal(scale=noise, size=X.shape)
    perm = rng.permutation(n)
    return X[perm].tolist(), (y[perm] * 2 - 1).tolist()


def mlp_classes(Value):
    """micrograd 0.1.0's nn.py, line for line, over the given Value class."""

    class Module:

        def zero_grad(self):
            for p in self.parameters():
                p.grad = 0

        def parameters(self):
            return []

    class Neuron(Module):

        def __init__(self, nin, nonlin=True):
            self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = Value(0)
            self.nonlin = nonlin

        def __call__(self, x):
            act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
            return act.relu() if self.nonlin else act

        def parameters(self):
            return self.w + [self.b]

    class Layer(Module):

        def __init__(self, nin, nout, **kwargs):
            self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

        def __call__(self, x):
            out = [n(x) for n in self.neurons]
            return out[0] if len(out) == 1 else out

        def parameters(self):
            return [p for n in self.neurons for p in n.parameters()]

    class MLP(Module):

        def __init__(self, nin, nouts):
            sz = [nin] + nouts
            self.layers = [Layer(sz[i], sz[i+1], nonlin=i != len(nouts)-1)
                           for i in range(len(nouts))]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

        def parameters(self):
            return [p for layer in self.layers for p in layer.parameters()]

    return MLP


def w2_init() -> list[float]:
    """Initial parameters in nn.py's order (per neuron: w..., b), drawn as
    nn.py draws them: w uniform(-1, 1), b = 0."""
    rng = random.Random(SEED)
    out = []
    for nin, nout in zip([2] + W2_SIZES, W2_SIZES):
        for _ in range(nout):
            out += [rng.uniform(-1, 1) for _ in range(nin)] + [0.0]
    return out


def demo_loss(model, X, y, Value):
    """micrograd demo.ipynb's loss(), full batch."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * sum((p*p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def demo_step(model, X, y, Value, lr):
    """One step of the demo's training loop; returns the loss (a float)."""
    total_loss, acc = demo_loss(model, X, y, Value)
    model.zero_grad()
    total_loss.backward()
    for p in model.parameters():
        p.data -= lr * p.grad
    return total_loss.data


def demo_lr(k: int) -> float:
    return 1.0 - 0.9 * k / 100


def scalar_model(Value, init):
    model = mlp_classes(Value)(2, W2_SIZES)
    for p, v in zip(model.parameters(), init, strict=True):
        p.data = v
    return model


def torch_model(torch, init):
    """The same MLP as batched nn.Linear layers, float64, same weights."""
    nn = torch.nn
    sizes = [2] + W2_SIZES
    layers = []
    for i, (nin, nout) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(nin, nout))
        if i < len(W2_SIZES) - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).double()
    it = iter(init)
    with torch.no_grad():
        for lin in (m for m in model if isinstance(m, nn.Linear)):
            for j in range(lin.out_features):
                for i in range(lin.in_features):
                    lin.weight[j, i] = next(it)
                lin.bias[j] = next(it)
    return model


def torch_params(torch, model) -> list[float]:
    """Parameters flattened in nn.py's order."""
    out = []
    for lin in (m for m in model if isinstance(m, torch.nn.Linear)):
        W = lin.weight.tolist()
        b = lin.bias.tolist()
        for j in range(lin.out_features):
            out += W[j] + [b[j]]
    return out


def torch_step(torch, model, Xt, yt, lr):
    scores = model(Xt).squeeze(1)
    losses = torch.relu(1 + -yt * scores)
    data_loss = losses.sum() * (1.0 / len(losses))
    reg_loss = 1e-4 * sum((p * p).sum() for p in model.parameters())
    total_loss = data_loss + reg_loss
    model.zero_grad()
    total_loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return total_loss.item()


def count_nodes(root) -> int:
    """Nodes of a micrograd graph (iterative; constants are nodes there)."""
    seen = {id(root)}
    stack = [root]
    while stack:
        v = stack.pop()
        for c in v._prev:
            if id(c) not in seen:
                seen.add(id(c))
                stack.append(c)
    return len(seen)


@workload("W2", "micrograd's demo training step, plain Value ops")
def w2(cfg: Config, engines: list[Engine]) -> Table:
    X, y = two_moons()
    init = w2_init()
    table = Table(
        "W2", WORKLOADS["W2"].title,
        [f"MLP(2, {W2_SIZES}) from micrograd's nn.py, {W2_POINTS} two-moons points "
         "(numpy, noise 0.1), max-margin loss + 1e-4 L2,",
         "zero_grad, backward, SGD p.data -= lr * p.grad; fastgrad and micrograd run the "
         "same Python code; torch: batched nn.Linear, float64, 1 thread"],
        [Column("ms_per_step", "ms/step", ratio=True)],
        [Row(e.key, e.label, absent=e.absent) for e in engines])

    # reference: micrograd's own nn.MLP, first step from the shared weights
    reference = None
    by_key = {e.key: e for e in engines}
    mg = by_key.get("micrograd")
    if mg and not mg.absent:
        try:
            import micrograd.nn
            model = micrograd.nn.MLP(2, W2_SIZES)
            for p, v in zip(model.parameters(), init, strict=True):
                p.data = v
            collect()
            with gc_mode(True):
                total, _ = demo_loss(model, X, y, mg.Value)
                nodes = count_nodes(total)
                model.zero_grad()
                total.backward()
                for p in model.parameters():
                    p.data -= demo_lr(0) * p.grad
            reference = [total.data] + [p.data for p in model.parameters()]
            del total, model
            collect()
            table.description.append(
                f"graph: {nodes:,} nodes per step (micrograd's count); correct = first-step "
                f"loss and {len(init)} updated parameters within {REL_TOL:.0e} relative "
                "of micrograd.nn.MLP")
        except Exception as e:      # noqa: BLE001
            table.notes.append(f"reference (micrograd.nn.MLP) failed: {_why(e)}")

    results: dict[str, list[float]] = {}
    slow = {"micrograd"}

    for e in engines:
        row = table.row(e.key)
        if e.absent:
            continue

        def cell(e=e, row=row):
            runs = cfg.slow_repeat if e.key in slow else cfg.repeat
            progress(f"W2 {e.label}: warmup + {runs} steps")
            if e.key == "torch":
                torch = e.module
                model = torch_model(torch, init)
                Xt = torch.tensor(X, dtype=torch.float64)
                yt = torch.tensor(y, dtype=torch.float64)

                def step(k):
                    return torch_step(torch, model, Xt, yt, demo_lr(k))

                def params():
                    return torch_params(torch, model)
            else:
                Value = e.Value
                model = scalar_model(Value, init)

                def step(k):
                    return demo_step(model, X, y, Value, demo_lr(k))

                def params():
                    return [float(p.data) for p in model.parameters()]

            times = []
            collect()
            for k in range(1 + runs):
                with gc_mode(e.gc_off):
                    t0 = perf_counter()
                    loss = step(k)
                    t1 = perf_counter()
                if e.gc_off:
                    collect()
                if k == 0:          # warmup; its result is checked
                    results[e.key] = [float(loss)] + params()
                else:
                    times.append(t1 - t0)
            row.runs = runs
            row.samples = {"step_s": times}
            row.figures["ms_per_step"] = statistics.median(times) * 1e3
            del model
            collect()
        guarded(row, cell)

    if reference is None and "fastgrad" in results:
        ref, ref_key = results["fastgrad"], "fastgrad"
    else:
        ref, ref_key = reference, None
    for r in table.rows:
        if r.engine in results:
            judge(r, results[r.engine], ref, r.engine == ref_key)
    table.fill_ratios()

    fg_ok = table.ok("fastgrad")

    def speedup(key):
        r = table.row(key)
        if not fg_ok or r is None or "ms_per_step" not in r.ratios:
            return None
        return r.ratios["ms_per_step"]

    table.budgets = [
        Budget("vs micrograd", 300, ">=", "x faster", speedup("micrograd")),
        Budget("vs micrograd, gc off", 20, ">=", "x faster", speedup("micrograd_gc_off")),
    ]
    table.notes.append("micrograd (gc on) is timed in steady state: its previous steps' "
                       "garbage is collected by the GC inside later steps, as in a "
                       "training loop; gc off: collected after each step, untimed")
    table.notes.append("fastgrad's and torch's steps include freeing their graph (by "
                       "reference counting, when the step returns); micrograd with gc off "
                       "never pays for that, its cycles wait for the untimed collection")
    return table


# ===========================================================================
# Main
# ===========================================================================

def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average": list(load) if load else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def finite(x):
    """JSON has no inf or NaN: such figures become strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--quick", action="store_true",
                    help="few repeats (default --repeat 3, one run of expensive cells)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per cheap cell (default 21, 3 with --quick); "
                         "expensive cells (micrograd and scalar torch in W1, micrograd "
                         "with gc in W2) run max(1, min(7, N // 3))")
    ap.add_argument("--only", nargs="+", metavar="W", choices=sorted(WORKLOADS),
                    help="run only these workloads")
    args = ap.parse_args(argv)

    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 21)
    repeat = max(1, repeat)
    cfg = Config(repeat=repeat, slow_repeat=max(1, min(7, repeat // 3)), quick=args.quick)

    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(
        ["python", "bench/run.py", *argv])
    info = machine()
    engines = load_engines()

    started = perf_counter()
    tables = [WORKLOADS[k].run(cfg, engines) for k in (args.only or WORKLOADS)]
    elapsed = perf_counter() - started

    if args.json:
        print(json.dumps(finite({
            "command": command,
            "machine": info,
            "config": asdict(cfg),
            "engines": [{"key": e.key, "label": e.label, "version": e.version or None,
                         "gc_off": e.gc_off, "absent": e.absent} for e in engines],
            "workloads": [t.to_json() for t in tables],
            "elapsed_s": elapsed,
        }), indent=2, allow_nan=False))
        return 0

    load = info["load_average"]
    print(f"command: {command}")
    print(f"machine: {info['platform']}; {info['cpu']}, {info['cpus']} CPUs"
          + (f"; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""))
    print(f"python:  {info['python']}")
    if load and info["cpus"] and load[0] > info["cpus"] / 2:
        print(f"WARNING: load {load[0]:.2f} on {info['cpus']} CPUs before starting: other "
              "processes compete for the CPUs and inflate whichever cells they overlap")
    print("engines: " + "; ".join(
        f"{e.label} {e.version}" if not e.absent else f"{e.label} absent ({e.absent})"
        for e in engines if e.key != "micrograd_gc_off"))
    print(f"timing:  medians of {cfg.repeat} runs ({cfg.slow_repeat} for expensive cells) "
          "after one warmup run; perf_counter; one thread; objects alive after the "
          "imports moved out of the GC's reach (gc.freeze)")
    for t in tables:
        print()
        print(render(t))
    print()
    print(f"total {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
