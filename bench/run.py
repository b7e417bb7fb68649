"""fastgrad against micrograd and PyTorch: medians and ratios from one run.

    python bench/run.py [--json] [--quick] [--repeat N] [--only W [W ...]]

A plain script in the style of msgspec's benchmarks: each workload times
every engine and prints a table of medians, with "fastgrad is Nx
faster/slower" ratios beside them (the machine is a shared, noisy 2-core box,
so ratios measured in the same run are what count). As in orjson's
benchmarks, each row also records whether the engine's result was correct,
checked against a reference. ``--json`` prints the same figures as JSON (plus
the raw samples) instead of the tables; progress goes to stderr.

Isolation. Every cell -- one workload on one engine -- runs in a fresh
subprocess of this interpreter,

    python bench/run.py --cell W2 micrograd_gc_off

which imports only that engine (and numpy), times it and prints its figures
and results as JSON on stdout. No engine's imports (torch alone brings
~170k GC-tracked objects) or garbage reach another engine's timings, and
micrograd "as shipped" is measured as a user runs it: a process with only
micrograd and numpy imported, default gc settings, nothing frozen. This
parent process only orchestrates and imports no engine. BLAS and OpenMP
pools are pinned to one thread by environment variables, set before any
subprocess starts; torch also gets torch.set_num_threads(1).

Engines (cell names; a missing engine is reported as absent, never a crash):

  fastgrad             this package
  micrograd            micrograd 0.1.0 as shipped: the cyclic GC enabled, as
                       users run it (its closures form reference cycles, so
                       most of its time is spent in the GC)
  micrograd_gc_off     the same, with gc.disable() during the timed region;
                       gc.enable() and gc.collect() afterwards, untimed
  torch                PyTorch on CPU, one thread

Workloads (see bench/README.md):

  W1      scalar graph of ~10**5 ops: build ns/op, backward ns/node, bytes/node
  W2      micrograd's demo training step, plain Value ops (micrograd's nn.py)
  W2-nn   the same step with fastgrad.nn.MLP, fastgrad.sum and optim.SGD
  W3      MLP(64, [128, 128, 10]), cross-entropy, batch of 32: one step
  OPT     optimizer step and zero_grad, ns per parameter, on 10**5 parameters

A workload is registered with ``workload(key, title, cells)``; its
``@W.cell`` function runs in a subprocess and returns rows of figures, its
``@W.table`` function runs here and turns the cells' outputs into a
``Table``: correctness, ratios, budgets, notes.

The budgets of /work/shared/DESIGN.md ("Speed and memory budgets") are
printed beside the measured figures with pass/MISS marks. They are reported,
never asserted: this script exits 0 whatever the figures.
"""

from __future__ import annotations

import os

# One thread everywhere: numpy's OpenBLAS would otherwise start a worker that
# spins on the second of this box's two cores. Set before numpy or torch can
# be imported, here or in a cell subprocess (which inherits the environment).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
for _var in THREAD_VARS:
    os.environ[_var] = "1"

import argparse
import gc
import hashlib
import json
import math
import platform
import random
import shlex
import statistics
import subprocess
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
F32_TOL = 1e-5          # float32 results: max |error| / max |reference|
SEED = 1337
CELL_TIMEOUT = 900      # seconds; a cell that takes longer is reported as an error


# ===========================================================================
# Engines, as a cell subprocess imports them
# ===========================================================================

class Absent(Exception):
    """The engine a cell needs cannot be imported (not installed, or
    fastgrad mid-rebuild)."""


# What the cell imported, reported back to the parent with its figures.
ENGINE: dict[str, Any] = {}


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _imported(name: str):
    # GC-tracked objects alive after the engine's import: the heap every
    # collection in this cell walks (reported, to show what isolation buys).
    ENGINE["name"] = name
    ENGINE["gc_tracked_after_import"] = len(gc.get_objects())


def import_fastgrad():
    try:
        import fastgrad
        import fastgrad._engine
        import fastgrad._optim
    except Exception as e:          # not built, or mid-rebuild
        raise Absent(_why(e)) from e
    # A fingerprint of the compiled modules: the engine may be rebuilt while
    # the benchmark runs, and the report says so if cells saw different builds.
    h = hashlib.sha1()
    for mod in (fastgrad._engine, fastgrad._optim):
        with open(mod.__file__, "rb") as f:
            h.update(f.read())
    ENGINE["build"] = h.hexdigest()[:12]
    _imported("fastgrad")
    return fastgrad


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


def import_micrograd():
    try:
        import micrograd.engine
        import micrograd.nn
    except Exception as e:
        raise Absent(_why(e)) from e
    if not hasattr(micrograd.engine.Value, "tanh"):
        micrograd.engine.Value.tanh = _micrograd_tanh
    _imported("micrograd")
    return micrograd


def import_torch():
    try:
        import torch
    except Exception as e:
        raise Absent(_why(e)) from e
    torch.set_num_threads(1)
    _imported("torch")
    return torch


class gc_mode:
    """gc.disable() inside the block if `off`; gc.enable() afterwards (the
    caller collects, outside its timing)."""

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
    """A full collection between runs, untimed, in cells whose engine leaves
    cyclic garbage: micrograd. fastgrad's and torch's graphs are freed by
    reference counting, so there a collection would free nothing and only
    walk the process's tracked objects (~23k with fastgrad), which slows
    fastgrad's next backward by 2-4 ns/node (measured: cache effects). Their
    cells leave the GC to run as it would in a user's loop."""
    if ENGINE.get("name") == "micrograd":
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
    engine: str                 # row key ("fastgrad" is the base of the ratios)
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
        """ratios[fig] = row's figure / fastgrad's: how many times faster
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

    def speedup(self, engine: str, figure: str) -> float | None:
        """How many times faster fastgrad is than `engine` on `figure`."""
        r = self.row(engine)
        if not self.ok("fastgrad") or r is None:
            return None
        return r.ratios.get(figure)

    def figure(self, engine: str, figure: str) -> float | None:
        return self.row(engine).figures.get(figure) if self.ok(engine) else None

    def to_json(self) -> dict:
        return {
            "key": self.key, "title": self.title, "description": self.description,
            "columns": [asdict(c) for c in self.columns],
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
    if round(abs(x), max(0, digits - 1 - mag)) >= 10 ** (mag + 1):
        mag += 1                    # 99.98 prints as 100, not 100.0
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


def max_scaled_err(got: list[float], ref: list[float]) -> float:
    """max |a - b| / max |b|: the error against the scale of the numbers, for
    float32 results (elementwise, a parameter near 0 that float32 rounds
    to 7 digits of the weights' scale would look wrong)."""
    if len(got) != len(ref):
        return math.inf
    scale = max((abs(b) for b in ref), default=0.0)
    worst = max((abs(a - b) for a, b in zip(got, ref)), default=0.0)
    e = worst / scale if scale else (0.0 if worst == 0 else math.inf)
    return math.inf if math.isnan(e) else e


Result = list | dict            # a list of floats, or {part: list of floats}


def judge(row: Row, got: Result | None, ref: Result | None, is_ref: bool,
          tol: float = REL_TOL, scaled: bool = False):
    """Fill row.correct/check: `got` against `ref`, elementwise relative
    error (scaled: max_scaled_err) within `tol`. Dict results are compared on
    the parts both have (e.g. the Python loop has only an SGD part)."""
    if is_ref:
        row.correct, row.check = None, "reference"
        return
    if isinstance(got, dict) and isinstance(ref, dict):
        parts = [k for k in got if k in ref]
        got = [x for k in parts for x in got[k]] if parts else None
        ref = [x for k in parts for x in ref[k]] if parts else None
    if got is None or ref is None:
        row.correct, row.check = None, "unchecked"
        return
    err = max_scaled_err(got, ref) if scaled else max_rel_err(got, ref)
    row.correct = err <= tol
    row.figures["max_scaled_err" if scaled else "max_rel_err"] = err
    verdict = "ok" if row.correct else "WRONG"
    how = f" scaled, tol {tol:.0e}" if scaled else (f", tol {tol:.0e}" if tol != REL_TOL else "")
    row.check = f"{verdict} ({err:.0e}{how})" if err else f"{verdict} (exact{how})"


# ===========================================================================
# Workload registry
# ===========================================================================

@dataclass
class Config:
    repeat: int                 # timed runs of a cheap cell
    slow_repeat: int            # timed runs of an expensive cell (seconds per run)
    quick: bool


CellOutput = dict   # {"rows": {row key: RowData}, "extra": {...}}, JSON-able
# RowData: {"runs": int, "figures": {...}, "samples": {...}, "result": Result}


@dataclass
class Workload:
    key: str
    title: str
    cells: tuple[str, ...]      # one fresh subprocess each, run in this order
    measure: Callable[[Config, str], CellOutput] | None = None   # in the cell
    report: Callable[[Config, dict[str, dict]], Table] | None = None  # in the parent

    def cell(self, fn):
        """Decorator: fn(cfg, cell) -> CellOutput, run inside the subprocess."""
        self.measure = fn
        return fn

    def table(self, fn):
        """Decorator: fn(cfg, {cell: output}) -> Table, run in the parent."""
        self.report = fn
        return fn


WORKLOADS: dict[str, Workload] = {}


def workload(key: str, title: str, cells: list[str]) -> Workload:
    w = Workload(key, title, tuple(cells))
    WORKLOADS[key] = w
    return w


def make_rows(outputs: dict[str, dict], layout: list[tuple[str, str, str]]) -> list[Row]:
    """Table rows from cell outputs. layout: (row key, label, cell name)."""
    rows = []
    for key, label, cell in layout:
        out = outputs.get(cell, {})
        row = Row(key, label, absent=out.get("absent"), error=out.get("error"))
        data = out.get("rows", {}).get(key)
        if data is None:
            if not (row.absent or row.error):
                row.error = "the cell returned no figures"
        else:
            row.error = data.get("error")
            row.runs = data.get("runs", 0)
            row.figures = dict(data.get("figures", {}))
            row.samples = dict(data.get("samples", {}))
        rows.append(row)
    return rows


def results_of(outputs: dict[str, dict], layout) -> dict[str, Result]:
    """{row key: result} for the rows whose cell returned one."""
    found = {}
    for key, _, cell in layout:
        data = outputs.get(cell, {}).get("rows", {}).get(key)
        if data and data.get("result") is not None:
            found[key] = data["result"]
    return found


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def time_steps(step: Callable[[int], float], params: Callable[[], list[float]],
               runs: int, gc_off: bool) -> tuple[list[float], list[float]]:
    """One warmup step (k = 0; its loss and updated parameters are the
    checked result), then `runs` timed steps k = 1..runs. With gc_off the
    GC is disabled during each step and the garbage collected after it,
    untimed. Returns (seconds per timed step, result)."""
    times = []
    result: list[float] = []
    collect()
    for k in range(1 + runs):
        with gc_mode(gc_off):
            t0 = perf_counter()
            loss = step(k)
            t1 = perf_counter()
        if gc_off:
            collect()
        if k == 0:
            result = [float(loss)] + params()
        else:
            times.append(t1 - t0)
    return times, result


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

SCALAR_LAYOUT = [("fastgrad", "fastgrad", "fastgrad"),
                 ("micrograd", "micrograd", "micrograd"),
                 ("micrograd_gc_off", "micrograd, gc off", "micrograd_gc_off"),
                 ("torch", "torch", "torch")]


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


def w1_leaves(cell: str):
    """(make a leaf, read its grad, read its value) for the cell's engine."""
    if cell == "torch":
        torch = import_torch()

        def leaf(v):
            return torch.tensor(v, dtype=torch.float64, requires_grad=True)
        return leaf, (lambda v: v.grad.item()), (lambda v: v.item())
    Value = import_fastgrad().Value if cell == "fastgrad" else import_micrograd().engine.Value
    return Value, (lambda v: float(v.grad)), (lambda v: float(v.data))


def w1_once(leaves, nums, gc_off: bool, want_result: bool):
    """Build and backward once; returns (build s, backward s, result or None)."""
    leaf, grad, value = leaves
    xs, ws, bs = nums
    X = [leaf(v) for v in xs]
    W = [leaf(v) for v in ws]
    B = [leaf(v) for v in bs]
    collect()
    with gc_mode(gc_off):
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


def w1_bytes_per_node(leaf, nums, empty_cache=None) -> float:
    """tracemalloc: memory traced after building minus before, per new node."""
    xs, ws, bs = nums
    X = [leaf(v) for v in xs]
    W = [leaf(v) for v in ws]
    B = [leaf(v) for v in bs]
    collect()
    # Nodes taken from a cache of freed Values would reuse memory allocated
    # before tracing began: empty it (fastgrad.empty_cache() where the
    # engine has one; else use up a free list of up to 1024 dead Values).
    if empty_cache is not None:
        empty_cache()
        pad = []
    else:
        pad = [leaf(0.0) for _ in range(4096)]
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


W1 = workload("W1", "scalar graph of ~10**5 ops (mul, add, tanh), then backward",
              ["fastgrad", "micrograd", "micrograd_gc_off", "torch"])


@W1.cell
def w1_cell(cfg: Config, cell: str) -> CellOutput:
    nums = w1_numbers()
    leaves = w1_leaves(cell)
    gc_off = cell == "micrograd_gc_off"
    runs = cfg.repeat if cell == "fastgrad" else cfg.slow_repeat
    # Every W1 run starts from fresh leaves, so with --quick an expensive
    # cell (0.3-1 s per run) times its checked run instead of warming up.
    warmup = not (cfg.quick and cell != "fastgrad")
    progress(f"W1 {cell}: {'warmup + ' if warmup else ''}{runs} runs")
    tb, tk, result = w1_once(leaves, nums, gc_off, want_result=True)
    builds, backs = ([], []) if warmup else ([tb], [tk])
    for _ in range(runs - len(builds)):
        tb, tk, _ = w1_once(leaves, nums, gc_off, want_result=False)
        builds.append(tb)
        backs.append(tk)
    figures = {"build_ns_per_op": statistics.median(builds) / W1_OPS * 1e9,
               "backward_ns_per_node": statistics.median(backs) / W1_NODES * 1e9}
    extra = {}
    if cell in ("fastgrad", "micrograd"):       # gc off: the same objects
        progress(f"W1 {cell}: memory (tracemalloc)")
        empty_cache = None
        if cell == "fastgrad":
            empty_cache = getattr(import_fastgrad(), "empty_cache", None)
        figures["bytes_per_node"] = w1_bytes_per_node(leaves[0], nums, empty_cache)
        extra["value_basicsize"] = leaves[0].__basicsize__
    return {"rows": {cell: {"runs": runs, "figures": figures, "result": result,
                            "samples": {"build_s": builds, "backward_s": backs}}},
            "extra": extra}


@W1.table
def w1_table(cfg: Config, outputs: dict[str, dict]) -> Table:
    table = Table(
        "W1", W1.title,
        [f"{W1_CHAINS} chains of {W1_STEPS} steps y = (y * w_i + b_i).tanh() over "
         f"shared leaves w, b; chain ends summed with +",
         f"{W1_OPS:,} ops, {W1_NODES:,} nodes with the {W1_LEAVES} leaves; "
         f"torch: the same graph of 0-d float64 tensors",
         "build ns/op: building time / ops; backward ns/node: backward() time / nodes; "
         "bytes/node: tracemalloc, after build minus before, / ops"],
        [Column("build_ns_per_op", "build ns/op", ratio=True),
         Column("backward_ns_per_node", "backward ns/node", ratio=True),
         Column("bytes_per_node", "bytes/node")],
        make_rows(outputs, SCALAR_LAYOUT))
    mg, mg_off = table.row("micrograd"), table.row("micrograd_gc_off")
    if "bytes_per_node" in mg.figures and table.ok("micrograd_gc_off"):
        mg_off.figures["bytes_per_node"] = mg.figures["bytes_per_node"]

    # correctness: root value and all 530 leaf gradients against micrograd
    results = results_of(outputs, SCALAR_LAYOUT)
    ref_key = "micrograd" if "micrograd" in results else "fastgrad"
    for r in table.rows:
        if r.engine in results:
            judge(r, results[r.engine], results.get(ref_key), r.engine == ref_key)
    table.fill_ratios()

    # budgets (fastgrad)
    fg = table.row("fastgrad")
    traced = table.figure("fastgrad", "bytes_per_node")
    rounded = None
    mem_detail = ""
    size = outputs.get("fastgrad", {}).get("extra", {}).get("value_basicsize")
    if traced is not None and size:
        slot = -(-size // 16) * 16      # pymalloc hands out 16-byte multiples
        rounded = traced + (slot - size)
        fg.figures["bytes_per_node_pymalloc"] = rounded
        mem_detail = (f"({fmt_num(traced)} traced by tracemalloc; pymalloc rounds "
                      f"each {size}-byte Value up to {slot})")
    table.budgets = [
        Budget("build", 40, "<=", "ns/op", table.figure("fastgrad", "build_ns_per_op"), 25),
        Budget("backward", 15, "<=", "ns/node",
               table.figure("fastgrad", "backward_ns_per_node"), 8),
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
    if not mg.absent:
        table.notes.append("micrograd 0.1.0 has no tanh(); the bench adds the "
                           "lecture's one (closure style, math.tanh)")
    table.notes.append("every run builds from fresh leaves; freeing the graph is not "
                       "timed; micrograd's cells gc.collect() before and after each run, "
                       "untimed (fastgrad's and torch's graphs are freed by reference "
                       "counting, nothing to collect)")
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


def load_params(model, init: list[float]):
    """Copy `init` into a micrograd-style model, in parameters() order."""
    for p, v in zip(model.parameters(), init, strict=True):
        p.data = v
    return model


def value_params(model) -> list[float]:
    return [float(p.data) for p in model.parameters()]


def torch_mlp(torch, nin: int, sizes: list[int], init: list[float], dtype):
    """MLP(nin, sizes) as nn.Linear layers with ReLU between (last layer
    linear), loaded from `init` in nn.py's order (per neuron: w..., b)."""
    nn = torch.nn
    dims = [nin] + sizes
    layers = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).to(torch.float64)
    flat = torch.tensor(init, dtype=torch.float64)
    at = 0
    with torch.no_grad():
        for lin in (m for m in model if isinstance(m, nn.Linear)):
            block = flat[at:at + lin.out_features * (lin.in_features + 1)]
            block = block.view(lin.out_features, lin.in_features + 1)
            lin.weight.copy_(block[:, :-1])
            lin.bias.copy_(block[:, -1])
            at += block.numel()
    assert at == len(init), (at, len(init))
    return model.to(dtype)


def torch_params(torch, model) -> list[float]:
    """Parameters flattened in nn.py's order, as Python floats."""
    out = []
    for lin in (m for m in model if isinstance(m, torch.nn.Linear)):
        W = lin.weight.double().tolist()
        b = lin.bias.double().tolist()
        for j in range(lin.out_features):
            out += W[j] + [b[j]]
    return out


def torch_demo_step(torch, model, Xt, yt, lr):
    """The demo step on batched tensors."""
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


def torch_demo_cell(cfg: Config, wkey: str, rows: dict[str, Any]) -> CellOutput:
    """W2 / W2-nn's torch cell: batched nn.Linear, one row per dtype."""
    torch = import_torch()
    X, y = two_moons()
    init = w2_init()
    out = {}
    for key, dtype in rows.items():
        dt = getattr(torch, dtype)
        model = torch_mlp(torch, 2, W2_SIZES, init, dt)
        Xt = torch.tensor(X, dtype=dt)
        yt = torch.tensor(y, dtype=dt)
        progress(f"{wkey} {key}: warmup + {cfg.repeat} steps")
        times, result = time_steps(
            lambda k: torch_demo_step(torch, model, Xt, yt, demo_lr(k)),
            lambda: torch_params(torch, model), cfg.repeat, gc_off=False)
        out[key] = {"runs": cfg.repeat, "samples": {"step_s": times},
                    "figures": {"ms_per_step": median_ms(times)}, "result": result}
    return {"rows": out}


W2 = workload("W2", "micrograd's demo training step, plain Value ops",
              ["reference", "fastgrad", "micrograd", "micrograd_gc_off", "torch"])


@W2.cell
def w2_cell(cfg: Config, cell: str) -> CellOutput:
    if cell == "torch":
        return torch_demo_cell(cfg, "W2", {"torch": "float64"})
    X, y = two_moons()
    init = w2_init()
    if cell == "reference":
        # micrograd's own nn.MLP, first step from the shared weights (untimed)
        mg = import_micrograd()
        model = load_params(mg.nn.MLP(2, W2_SIZES), init)
        with gc_mode(True):
            total, _ = demo_loss(model, X, y, mg.engine.Value)
            nodes = count_nodes(total)
            model.zero_grad()
            total.backward()
            for p in model.parameters():
                p.data -= demo_lr(0) * p.grad
        return {"rows": {}, "extra": {"reference": [total.data] + value_params(model),
                                      "nodes": nodes}}
    Value = import_fastgrad().Value if cell == "fastgrad" else import_micrograd().engine.Value
    model = load_params(mlp_classes(Value)(2, W2_SIZES), init)
    runs = cfg.slow_repeat if cell == "micrograd" else cfg.repeat
    progress(f"W2 {cell}: warmup + {runs} steps")
    times, result = time_steps(lambda k: demo_step(model, X, y, Value, demo_lr(k)),
                               lambda: value_params(model), runs,
                               gc_off=cell == "micrograd_gc_off")
    return {"rows": {cell: {"runs": runs, "samples": {"step_s": times},
                            "figures": {"ms_per_step": median_ms(times)},
                            "result": result}}}


def check_and_ratios(table: Table, results: dict, ref: list | None, ref_key,
                     float32: tuple[str, ...] = ()):
    """Judge every row against `ref` (float32 rows by max_scaled_err), then
    fill the ratios."""
    for r in table.rows:
        if r.engine in results:
            if r.engine in float32:
                judge(r, results[r.engine], ref, False, F32_TOL, scaled=True)
            else:
                judge(r, results[r.engine], ref, r.engine == ref_key)
    table.fill_ratios()


@W2.table
def w2_table(cfg: Config, outputs: dict[str, dict]) -> Table:
    table = Table(
        "W2", W2.title,
        [f"MLP(2, {W2_SIZES}) from micrograd's nn.py, {W2_POINTS} two-moons points "
         "(numpy, noise 0.1), max-margin loss + 1e-4 L2,",
         "zero_grad, backward, SGD p.data -= lr * p.grad; fastgrad and micrograd run the "
         "same Python code; torch: batched nn.Linear, float64, 1 thread"],
        [Column("ms_per_step", "ms/step", ratio=True)],
        make_rows(outputs, SCALAR_LAYOUT))
    results = results_of(outputs, SCALAR_LAYOUT)
    ref_out = outputs.get("reference", {})
    reference = ref_out.get("extra", {}).get("reference")
    if reference is not None:
        table.description.append(
            f"graph: {ref_out['extra']['nodes']:,} nodes per step (micrograd's count); "
            f"correct = first-step loss and {len(reference) - 1} updated parameters within "
            f"{REL_TOL:.0e} relative of micrograd.nn.MLP")
        ref, ref_key = reference, None
    else:
        table.notes.append("reference (micrograd.nn.MLP) unavailable: "
                           f"{ref_out.get('absent') or ref_out.get('error')}; "
                           "fastgrad is the reference")
        ref, ref_key = results.get("fastgrad"), "fastgrad"
    check_and_ratios(table, results, ref, ref_key)
    table.budgets = [
        Budget("vs micrograd", 300, ">=", "x faster", table.speedup("micrograd", "ms_per_step")),
        Budget("vs micrograd, gc off", 20, ">=", "x faster",
               table.speedup("micrograd_gc_off", "ms_per_step")),
    ]
    table.notes += DEMO_NOTES
    return table


DEMO_NOTES = [
    "micrograd (gc on) is timed in steady state: its previous steps' garbage is "
    "collected by the GC inside later steps, as in a training loop; gc off: collected "
    "after each step, untimed",
    "fastgrad's and torch's steps include freeing their graph (by reference counting, "
    "when the step returns); micrograd with gc off never pays for that, its cycles wait "
    "for the untimed collection",
]


# ===========================================================================
# W2-nn: the demo step with fastgrad.nn.MLP (one fused node per neuron)
# ===========================================================================
#
# The W2 step as a fastgrad user writes it: fastgrad.nn.MLP (each neuron one
# fused affine node), fastgrad.sum for the loss and L2 sums, fastgrad.optim.SGD
# for zero_grad and the update. micrograd runs its own micrograd.nn.MLP with
# the demo's code (as shipped, and with gc off), and is the reference.

W2NN_LAYOUT = [("fastgrad", "fastgrad.nn.MLP", "fastgrad"),
               ("micrograd", "micrograd.nn.MLP", "micrograd"),
               ("micrograd_gc_off", "micrograd.nn.MLP, gc off", "micrograd_gc_off"),
               ("torch", "torch, float64", "torch"),
               ("torch_f32", "torch, float32", "torch")]


def fastgrad_demo_loss(fg, model, X, y):
    """demo_loss() with fastgrad's own building blocks. The inputs stay
    plain floats (a fastgrad Neuron takes numbers)."""
    scores = [model(x) for x in X]
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = fg.sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * fg.sum([p * p for p in model.parameters()])
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (si.data > 0) for yi, si in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def fastgrad_demo_step(fg, model, opt, X, y, k):
    """demo_step() with optim.SGD: zero_grad, backward, update at demo_lr(k)."""
    total_loss, acc = fastgrad_demo_loss(fg, model, X, y)
    opt.zero_grad()
    total_loss.backward()
    opt.param_groups[0]["lr"] = demo_lr(k)
    opt.step()
    return total_loss.data


W2NN = workload("W2-nn", "the demo step with fastgrad.nn.MLP (one fused node per neuron)",
                ["fastgrad", "micrograd", "micrograd_gc_off", "torch"])


@W2NN.cell
def w2nn_cell(cfg: Config, cell: str) -> CellOutput:
    if cell == "torch":
        return torch_demo_cell(cfg, "W2-nn", {"torch": "float64", "torch_f32": "float32"})
    X, y = two_moons()
    init = w2_init()
    extra = {}
    if cell == "fastgrad":
        fg = import_fastgrad()
        model = load_params(fg.nn.MLP(2, W2_SIZES), init)
        opt = fg.optim.SGD(model.parameters(), lr=demo_lr(0))

        def step(k):
            return fastgrad_demo_step(fg, model, opt, X, y, k)
        # what the demo's model.parameters() call (a Python walk) costs per step
        t0 = perf_counter()
        for _ in range(100):
            model.parameters()
        extra["parameters_call_ms"] = (perf_counter() - t0) * 10
    else:
        mg = import_micrograd()
        model = load_params(mg.nn.MLP(2, W2_SIZES), init)

        def step(k):
            return demo_step(model, X, y, mg.engine.Value, demo_lr(k))
    runs = cfg.slow_repeat if cell == "micrograd" else cfg.repeat
    progress(f"W2-nn {cell}: warmup + {runs} steps")
    times, result = time_steps(step, lambda: value_params(model), runs,
                               gc_off=cell == "micrograd_gc_off")
    return {"rows": {cell: {"runs": runs, "samples": {"step_s": times},
                            "figures": {"ms_per_step": median_ms(times)},
                            "result": result}},
            "extra": extra}


@W2NN.table
def w2nn_table(cfg: Config, outputs: dict[str, dict]) -> Table:
    table = Table(
        "W2-nn", W2NN.title,
        [f"the W2 step (MLP(2, {W2_SIZES}), {W2_POINTS} two-moons points, max-margin "
         "loss + 1e-4 L2, zero_grad, backward, SGD)",
         "fastgrad: fastgrad.nn.MLP (a neuron is one fused node), fastgrad.sum for the "
         "loss and L2 sums, optim.SGD zero_grad/step;",
         "micrograd: micrograd.nn.MLP with the demo's own code; torch: batched nn.Linear, "
         "1 thread, float64 and float32"],
        [Column("ms_per_step", "ms/step", ratio=True)],
        make_rows(outputs, W2NN_LAYOUT))
    results = results_of(outputs, W2NN_LAYOUT)
    ref_key = "micrograd" if "micrograd" in results else "fastgrad"
    n = len(results[ref_key]) - 1 if ref_key in results else 0
    table.description.append(
        f"correct = first-step loss and {n} updated parameters within {REL_TOL:.0e} "
        f"relative of {'micrograd.nn.MLP' if ref_key == 'micrograd' else 'fastgrad'} "
        f"(float32: max |error| within {F32_TOL:.0e} of the largest |number|), from the "
        "same initial weights")
    check_and_ratios(table, results, results.get(ref_key), ref_key, ("torch_f32",))
    table.budgets = [
        Budget("vs micrograd", 500, ">=", "x faster",
               table.speedup("micrograd", "ms_per_step"), 1000),
        Budget("vs micrograd, gc off", 40, ">=", "x faster",
               table.speedup("micrograd_gc_off", "ms_per_step"), 100),
    ]
    walk = outputs.get("fastgrad", {}).get("extra", {}).get("parameters_call_ms")
    if walk is not None:
        table.notes.append(
            f"fastgrad's step includes the demo's model.parameters() call for the L2 "
            f"term, a Python walk over the modules: {fmt_num(walk)} ms of it")
    table.notes.append("fastgrad feeds the inputs as plain floats (a fastgrad Neuron "
                       "accepts numbers); micrograd's demo wraps each in a Value")
    table.notes += DEMO_NOTES
    return table


# ===========================================================================
# W3: MLP(64, [128, 128, 10]), cross-entropy over a batch of 32, one step
# ===========================================================================
#
# fastgrad: fastgrad.nn.MLP with the fused cross_entropy_with_logits per
# sample, the mean over the batch, optim.SGD. torch float64 one thread, (a)
# per sample: the same loop over 32 one-sample tensors, losses summed, one
# backward; (b) batched: one (32, 64) forward. Same initial weights (PyTorch's
# nn.Linear init, U(-1/sqrt(nin), 1/sqrt(nin)), drawn with numpy) and data.

W3_NIN = 64
W3_SIZES = [128, 128, 10]
W3_BATCH = 32
W3_LR = 0.1

W3_LAYOUT = [("fastgrad", "fastgrad", "fastgrad"),
             ("torch_per_sample", "torch, per sample", "torch"),
             ("torch_batched", "torch, batched", "torch")]


def w3_data():
    """(X as a (32, 64) array, targets as a list of ints, initial params)."""
    import numpy as np
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((W3_BATCH, W3_NIN))
    T = rng.integers(0, W3_SIZES[-1], W3_BATCH).tolist()
    init = []
    for nin, nout in zip([W3_NIN] + W3_SIZES, W3_SIZES):
        bound = 1.0 / math.sqrt(nin)
        Wb = rng.uniform(-bound, bound, (nout, nin + 1))    # per neuron: w..., b
        init += Wb.ravel().tolist()
    return X, T, init


W3 = workload("W3", f"MLP({W3_NIN}, {W3_SIZES}), cross-entropy over a batch of "
              f"{W3_BATCH}, one full step", ["fastgrad", "torch"])


@W3.cell
def w3_cell(cfg: Config, cell: str) -> CellOutput:
    X, T, init = w3_data()
    rows = {}
    if cell == "fastgrad":
        fg = import_fastgrad()
        model = load_params(fg.nn.MLP(W3_NIN, W3_SIZES), init)
        opt = fg.optim.SGD(model.parameters(), lr=W3_LR)
        xs = X.tolist()

        def step(k):
            opt.zero_grad()
            losses = [fg.cross_entropy_with_logits(model(x), t) for x, t in zip(xs, T)]
            loss = fg.sum(losses) * (1.0 / len(losses))
            loss.backward()
            opt.step()
            return loss.data

        progress(f"W3 fastgrad: warmup + {cfg.repeat} steps")
        times, result = time_steps(step, lambda: value_params(model), cfg.repeat, False)
        rows["fastgrad"] = {"runs": cfg.repeat, "samples": {"step_s": times},
                            "figures": {"ms_per_step": median_ms(times)}, "result": result}
        return {"rows": rows}

    torch = import_torch()
    F = torch.nn.functional
    Xt = torch.tensor(X, dtype=torch.float64)
    Tt = torch.tensor(T, dtype=torch.int64)
    x1 = [Xt[i:i + 1].clone() for i in range(W3_BATCH)]
    t1 = [Tt[i:i + 1].clone() for i in range(W3_BATCH)]
    for key in ("torch_per_sample", "torch_batched"):
        model = torch_mlp(torch, W3_NIN, W3_SIZES, init, torch.float64)
        opt = torch.optim.SGD(model.parameters(), lr=W3_LR)
        if key == "torch_per_sample":
            def loss_fn(model=model):
                return sum(F.cross_entropy(model(x), t) for x, t in zip(x1, t1)) / W3_BATCH
        else:
            def loss_fn(model=model):
                return F.cross_entropy(model(Xt), Tt)

        def step(k, opt=opt, loss_fn=loss_fn):
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()
            return loss.item()

        progress(f"W3 {key}: warmup + {cfg.repeat} steps")
        times, result = time_steps(step, lambda model=model: torch_params(torch, model),
                                   cfg.repeat, False)
        rows[key] = {"runs": cfg.repeat, "samples": {"step_s": times},
                     "figures": {"ms_per_step": median_ms(times)}, "result": result}
    return {"rows": rows}


@W3.table
def w3_table(cfg: Config, outputs: dict[str, dict]) -> Table:
    nparams = sum((a + 1) * b for a, b in zip([W3_NIN] + W3_SIZES, W3_SIZES))
    table = Table(
        "W3", W3.title,
        [f"fastgrad: fastgrad.nn.MLP({W3_NIN}, {W3_SIZES}), fused cross_entropy_with_logits "
         f"per sample, mean via fastgrad.sum, optim.SGD(lr={W3_LR});",
         "torch: nn.Linear float64, 1 thread, F.cross_entropy, optim.SGD; per sample: the "
         f"same loop over {W3_BATCH} (1, {W3_NIN}) tensors, losses summed, one backward; "
         f"batched: one ({W3_BATCH}, {W3_NIN}) forward",
         f"{nparams:,} parameters; a step = zero_grad, forward, backward, SGD update; "
         "random data (numpy, fixed seed), PyTorch's init in both"],
        [Column("ms_per_step", "ms/step", ratio=True)],
        make_rows(outputs, W3_LAYOUT))
    results = results_of(outputs, W3_LAYOUT)
    ref_key = "torch_batched" if "torch_batched" in results else "fastgrad"
    table.description.append(
        f"correct = first-step loss and {nparams:,} updated parameters within "
        f"{REL_TOL:.0e} relative of {ref_key}")
    for r in table.rows:
        if r.engine in results:
            judge(r, results[r.engine], results.get(ref_key), r.engine == ref_key)
    table.fill_ratios()
    table.notes.append(
        "micrograd: not run. micrograd 0.1.0 has no log() (nor exp-based softmax or "
        "cross-entropy), so the loss cannot be written in its ops without adding to its "
        "engine; at ~2 us per node with gc its step of ~1.7M scalar nodes would take "
        "several seconds")
    return table


# ===========================================================================
# OPT: optimizer step cost, ns per parameter, on 10**5 parameters
# ===========================================================================
#
# fastgrad: 10**5 leaf Values with random data and grads, fastgrad.optim
# SGD, SGD with momentum, Adam, AdamW; opt.step() timed alone (the grads do
# not change between steps), zero_grad timed separately at the end. The
# Python loop is micrograd's way over the same Values. torch.optim: one
# float64 tensor of 10**5 elements, default settings, one thread.

OPT_N = 10**5
OPT_INNER = 10          # steps per timed sample (one step is ~0.3 ms)
OPT_LR = 1e-3
OPT_STRIDE = 10         # every 10th parameter after the first step is checked
OPT_KINDS = ["sgd", "momentum", "adam", "adamw"]

OPT_LAYOUT = [("fastgrad", "fastgrad.optim (Values)", "fastgrad"),
              ("python_loop", "Python loop (Values)", "fastgrad"),
              ("torch", "torch.optim (1 tensor)", "torch")]


def opt_data():
    """Initial data and grads, as Python floats."""
    import numpy as np
    rng = np.random.default_rng(SEED)
    return rng.standard_normal(OPT_N).tolist(), rng.standard_normal(OPT_N).tolist()


def opt_time(fn: Callable[[], Any], runs: int, inner: int) -> list[float]:
    """`runs` samples of the time of one fn() call, each the mean of `inner`."""
    samples = []
    for _ in range(runs):
        t0 = perf_counter()
        for _ in range(inner):
            fn()
        samples.append((perf_counter() - t0) / inner)
    return samples


def opt_figures(row: dict, name: str, samples: list[float]):
    row["samples"][name + "_s"] = samples
    row["figures"][name] = statistics.median(samples) / OPT_N * 1e9


OPT = workload("OPT", f"optimizer step and zero_grad, ns per parameter, {OPT_N:,} parameters",
               ["fastgrad", "torch"])


@OPT.cell
def opt_cell(cfg: Config, cell: str) -> CellOutput:
    data, grads = opt_data()
    runs, inner = cfg.repeat, OPT_INNER
    extra = {}
    if cell == "fastgrad":
        fg = import_fastgrad()
        make = {"sgd": lambda ps: fg.optim.SGD(ps, lr=OPT_LR),
                "momentum": lambda ps: fg.optim.SGD(ps, lr=OPT_LR, momentum=0.9),
                "adam": lambda ps: fg.optim.Adam(ps, lr=OPT_LR),
                "adamw": lambda ps: fg.optim.AdamW(ps, lr=OPT_LR)}

        def fresh():
            ps = [fg.Value(x) for x in data]
            for p, g in zip(ps, grads):
                p.grad = g
            return ps

        def python_sgd():
            for p in ps:
                p.data -= OPT_LR * p.grad

        def python_zero_grad():
            for p in ps:
                p.grad = 0.0
        row = {"runs": runs, "figures": {}, "samples": {}, "result": {}}
        loop = {"runs": runs, "figures": {}, "samples": {}, "result": {}}
        for kind in OPT_KINDS:
            progress(f"OPT fastgrad {kind}: warmup + {runs} x {inner} steps")
            ps = fresh()
            opt = make[kind](ps)
            opt.step()
            row["result"][kind] = [p.data for p in ps[::OPT_STRIDE]]
            opt_figures(row, kind, opt_time(opt.step, runs, inner))
        progress(f"OPT fastgrad zero_grad, Python loop: {runs} x {inner}")
        opt_figures(row, "zero_grad", opt_time(opt.zero_grad, runs, inner))
        ps = fresh()
        python_sgd()
        loop["result"]["sgd"] = [p.data for p in ps[::OPT_STRIDE]]
        opt_figures(loop, "sgd", opt_time(python_sgd, runs, 1))
        opt_figures(loop, "zero_grad", opt_time(python_zero_grad, runs, 1))
        return {"rows": {"fastgrad": row, "python_loop": loop}}

    torch = import_torch()
    make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=OPT_LR),
            "momentum": lambda ps: torch.optim.SGD(ps, lr=OPT_LR, momentum=0.9),
            "adam": lambda ps: torch.optim.Adam(ps, lr=OPT_LR),
            "adamw": lambda ps: torch.optim.AdamW(ps, lr=OPT_LR)}
    row = {"runs": runs, "figures": {}, "samples": {}, "result": {}}
    for kind in OPT_KINDS:
        progress(f"OPT torch {kind}: warmup + {runs} x {inner} steps")
        p = torch.nn.Parameter(torch.tensor(data, dtype=torch.float64))
        p.grad = torch.tensor(grads, dtype=torch.float64)
        opt = make[kind]([p])
        opt.step()
        row["result"][kind] = p.detach()[::OPT_STRIDE].tolist()
        opt_figures(row, kind, opt_time(opt.step, runs, inner))
    opt_figures(row, "zero_grad",
                opt_time(lambda: opt.zero_grad(set_to_none=False), runs, inner))
    try:        # what the defaults chose (private API; informative only)
        from torch.optim.optimizer import _default_to_fused_or_foreach
        fused, foreach = _default_to_fused_or_foreach([p], False, False)
        extra["torch_defaults"] = f"foreach={foreach}, fused={fused}"
    except Exception:               # noqa: BLE001
        pass
    return {"rows": {"torch": row}, "extra": extra}


@OPT.table
def opt_table(cfg: Config, outputs: dict[str, dict]) -> Table:
    table = Table(
        "OPT", OPT.title,
        [f"ns per parameter of one opt.step() (each sample the mean of {OPT_INNER} steps), "
         "and of zero_grad, timed separately; lr 1e-3, momentum 0.9, Adam/AdamW defaults",
         f"fastgrad.optim: {OPT_N:,} leaf Values with random data and grads; Python loop: "
         "micrograd's `for p in params: p.data -= lr * p.grad` (and p.grad = 0) over them;",
         f"torch.optim: one float64 tensor of {OPT_N:,} elements, default settings, 1 thread"],
        [Column("sgd", "SGD", ratio=True),
         Column("momentum", "momentum", ratio=True),
         Column("adam", "Adam", ratio=True),
         Column("adamw", "AdamW", ratio=True),
         Column("zero_grad", "zero_grad", ratio=True)],
        make_rows(outputs, OPT_LAYOUT))
    results = results_of(outputs, OPT_LAYOUT)
    ref_key = "torch" if "torch" in results else "fastgrad"
    table.description.append(
        f"correct = every {OPT_STRIDE}th parameter after one step of each optimizer, "
        f"from the same data and grads, within {REL_TOL:.0e} relative of {ref_key}")
    for r in table.rows:
        if r.engine in results:
            judge(r, results[r.engine], results.get(ref_key), r.engine == ref_key)
    table.fill_ratios()
    table.budgets = [
        Budget("SGD step", 5, "<=", "ns/param", table.figure("fastgrad", "sgd")),
        Budget("Adam step", 10, "<=", "ns/param", table.figure("fastgrad", "adam")),
    ]
    defaults = outputs.get("torch", {}).get("extra", {}).get("torch_defaults")
    table.notes.append(
        "torch.optim with its defaults (foreach=None, fused=None)"
        + (f", which on CPU resolve to {defaults}" if defaults else "")
        + "; torch zero_grad is timed with set_to_none=False (the default, True, only "
        "drops the grad tensor)")
    table.notes.append("fastgrad's step reads and writes each Value's data and grad in "
                       "place (one pointer per parameter); torch's works on contiguous "
                       "arrays")
    return table


# ===========================================================================
# Cells: the subprocess side and the parent side
# ===========================================================================

def run_cell(cfg: Config, wkey: str, cell: str) -> dict:
    """In the subprocess: run one cell; return its output (JSON-able)."""
    out: dict[str, Any] = {"workload": wkey, "cell": cell}
    t0 = perf_counter()
    try:
        out.update(WORKLOADS[wkey].measure(cfg, cell))
    except Absent as e:
        out["absent"] = str(e)
    except Exception as e:          # noqa: BLE001 - a benchmark reports, never dies
        out["error"] = _why(e)
        import traceback
        traceback.print_exc()
    out["engine"] = dict(ENGINE)
    out["wall_s"] = perf_counter() - t0
    return out


def cell_main(cfg: Config, wkey: str, cell: str) -> int:
    # stdout carries the JSON; anything an engine prints goes to stderr
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        out = run_cell(cfg, wkey, cell)
    finally:
        sys.stdout = real_stdout
    print(json.dumps(finite(out), allow_nan=False), flush=True)
    sys.stderr.flush()
    # Skip interpreter teardown: finalizing micrograd's cyclic graphs or
    # torch's modules takes up to a second per cell and measures nothing.
    os._exit(0)


def spawn(cfg: Config, wkey: str, cell: str) -> dict:
    """In the parent: run one cell in a fresh interpreter; parse its JSON."""
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", wkey, cell,
           "--repeat", str(cfg.repeat)] + (["--quick"] if cfg.quick else [])
    env = dict(os.environ, **{v: "1" for v in THREAD_VARS})
    t0 = perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, env=env,
                              text=True, timeout=CELL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"workload": wkey, "cell": cell, "error": f"timed out after {CELL_TIMEOUT} s"}
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        out = {"workload": wkey, "cell": cell,
               "error": f"subprocess exited with {proc.returncode} and no JSON "
                        "(its stderr is above)"}
    out["process_s"] = perf_counter() - t0
    return out


def run_workload(cfg: Config, w: Workload) -> tuple[Table, dict[str, dict]]:
    outputs = {cell: spawn(cfg, w.key, cell) for cell in w.cells}
    return w.report(cfg, outputs), outputs


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
        "python": f"{platform.python_implementation()} {platform.python_version()} "
                  f"({sys.executable})",
    }


def installed_versions() -> dict[str, str | None]:
    """Versions from the installed metadata (the parent imports no engine)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("fastgrad", "micrograd", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def finite(x):
    """JSON has no inf or NaN: such figures become strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def cell_summary(all_outputs: list[dict]) -> list[dict]:
    """Per cell: what ran, how long, the engine's heap; no figures."""
    keep = ("workload", "cell", "absent", "error", "wall_s", "process_s")
    return [{**{k: o.get(k) for k in keep}, **o.get("engine", {})} for o in all_outputs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--quick", action="store_true",
                    help="few repeats (default --repeat 3, one run of expensive cells)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per cheap cell (default 21, 3 with --quick); "
                         "expensive cells (micrograd and scalar torch in W1, micrograd "
                         "with gc in W2 and W2-nn) run max(1, min(7, N // 3))")
    ap.add_argument("--only", nargs="+", metavar="W", choices=list(WORKLOADS),
                    help=f"run only these workloads ({', '.join(WORKLOADS)})")
    ap.add_argument("--cell", nargs=2, metavar=("WORKLOAD", "CELL"),
                    help="internal: run one cell in this process, print its JSON")
    args = ap.parse_args(argv)

    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 21)
    repeat = max(1, repeat)
    cfg = Config(repeat=repeat, slow_repeat=max(1, min(7, repeat // 3)), quick=args.quick)

    if args.cell:
        wkey, cell = args.cell
        if wkey not in WORKLOADS or cell not in WORKLOADS[wkey].cells:
            ap.error(f"unknown cell {wkey} {cell}")
        return cell_main(cfg, wkey, cell)

    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(
        ["python", "bench/run.py", *argv])
    info = machine()
    versions = installed_versions()

    started = perf_counter()
    tables, all_outputs = [], []
    for key in (args.only or WORKLOADS):
        table, outputs = run_workload(cfg, WORKLOADS[key])
        tables.append(table)
        all_outputs += outputs.values()
    elapsed = perf_counter() - started

    cells = cell_summary(all_outputs)
    builds = sorted({c["build"] for c in cells if c.get("build")})
    heaps: dict[str, int] = {}
    for c in cells:
        if c.get("gc_tracked_after_import"):
            heaps.setdefault(c["name"], c["gc_tracked_after_import"])

    if args.json:
        print(json.dumps(finite({
            "command": command,
            "machine": info,
            "config": asdict(cfg),
            "versions": versions,
            "method": {"isolation": "one fresh subprocess per cell (workload x engine)",
                       "gc": "default settings, no gc.freeze; micrograd_gc_off: "
                             "gc.disable() in the timed region",
                       "threads": {v: "1" for v in THREAD_VARS},
                       "statistic": "median"},
            "fastgrad_builds": builds,
            "workloads": [t.to_json() for t in tables],
            "cells": cells,
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
    absent = {}
    for c in cells:
        if c.get("absent"):
            absent.setdefault("micrograd" if "micrograd" in c["cell"] or
                              c["cell"] == "reference" else c["cell"], c["absent"])
    print("engines: " + "; ".join(
        (f"{k} {v}" if v else f"{k} not installed")
        + (f" (could not be imported: {absent[k]})" if k in absent else "")
        for k, v in versions.items()))
    print(f"timing:  medians of {cfg.repeat} runs ({cfg.slow_repeat} for expensive cells) "
          "after one warmup run" + (" (W1's expensive cells: none, their first run is "
                                    "timed)" if cfg.quick else "")
          + "; perf_counter; one thread")
    print("method:  every cell (workload x engine) in a fresh subprocess of this python; "
          "default gc, no gc.freeze; GC-tracked objects after import: "
          + ", ".join(f"{k} {v:,}" for k, v in heaps.items()))
    if len(builds) > 1:
        print(f"WARNING: fastgrad's compiled modules changed during the run "
              f"({len(builds)} builds: {', '.join(builds)}): its rows in different "
              "workloads may come from different builds")
    for t in tables:
        print()
        print(render(t))
    print()
    print(f"total {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
