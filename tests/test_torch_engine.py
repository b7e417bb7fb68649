"""fastgrad against PyTorch (float64): the same expressions must give the same
values and gradients. micrograd's own test_engine.py, then each op, sum/dot,
the IEEE edge cases, and random graphs with a fixed seed."""

import math
import random

import pytest

torch = pytest.importorskip("torch")

import fastgrad  # noqa: E402
from fastgrad import Value  # noqa: E402
from reference import micrograd_readme_expression  # noqa: E402


def T(x):
    return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


def close(x, y, rel=1e-12, abs_=1e-12):
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)


def tgrad(t):
    return 0.0 if t.grad is None else t.grad.item()


# ---------------------------------------------------------------------------
# micrograd's test_engine.py
# ---------------------------------------------------------------------------


def test_sanity_check():
    x = Value(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xmg, ymg = x, y

    x = torch.Tensor([-4.0]).double()
    x.requires_grad = True
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xpt, ypt = x, y

    # forward pass went well
    assert ymg.data == ypt.data.item()
    # backward pass went well
    assert xmg.grad == xpt.grad.item()


def test_more_ops():
    a = Value(-4.0)
    b = Value(2.0)
    g = micrograd_readme_expression(a, b)
    g.backward()
    amg, bmg, gmg = a, b, g

    a = torch.Tensor([-4.0]).double()
    b = torch.Tensor([2.0]).double()
    a.requires_grad = True
    b.requires_grad = True
    g = micrograd_readme_expression(a, b)
    g.backward()
    apt, bpt, gpt = a, b, g

    tol = 1e-6
    # forward pass went well
    assert abs(gmg.data - gpt.data.item()) < tol
    # backward pass went well
    assert abs(amg.grad - apt.grad.item()) < tol
    assert abs(bmg.grad - bpt.grad.item()) < tol
    # and, being float64 on both sides, much closer than micrograd's tolerance
    assert close(gmg.data, gpt.item())
    assert close(amg.grad, apt.grad.item())
    assert close(bmg.grad, bpt.grad.item())


# ---------------------------------------------------------------------------
# Each op
# ---------------------------------------------------------------------------

UNARY = {
    "neg": (lambda v: -v, lambda t: -t),
    "relu": (lambda v: v.relu(), torch.relu),
    "tanh": (lambda v: v.tanh(), torch.tanh),
    "sigmoid": (lambda v: v.sigmoid(), torch.sigmoid),
    "exp": (lambda v: v.exp(), torch.exp),
    "log": (lambda v: v.log(), torch.log),
    "abs": (lambda v: v.abs(), torch.abs),
}
UNARY_POINTS = [-30.0, -2.5, -0.3, 0.0, 0.7, 1.0, 4.2, 30.0, 800.0, -800.0, math.inf, -math.inf]


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("x", UNARY_POINTS)
def test_unary_op(name, x):
    f, g = UNARY[name]
    a = Value(x)
    y = f(a)
    y.backward()
    t = T(x)
    r = g(t)
    r.backward()
    assert close(y.data, r.item()), (y.data, r.item())
    assert close(a.grad, tgrad(t)), (a.grad, tgrad(t))


BINARY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}
BINARY_POINTS = [
    (1.7, -0.6),
    (0.3, 2.5),
    (2.2, 3.0),
    (-1.5, 2.0),
    (-2.0, 3.0),
    (4.0, 0.5),
    (0.0, 2.0),
    (0.0, 0.0),
    (-2.0, 0.0),
    (0.0, -1.0),
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, 0.5),
    (-2.0, 0.5),
    (10.0, 400.0),
]


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("x,y", BINARY_POINTS)
def test_binary_op(name, x, y):
    op = BINARY[name]
    # Value op Value
    a, b = Value(x), Value(y)
    out = op(a, b)
    out.backward()
    ta, tb = T(x), T(y)
    ref = op(ta, tb)
    ref.backward()
    assert close(out.data, ref.item()), (out.data, ref.item())
    assert close(a.grad, tgrad(ta)), ("d/da", a.grad, tgrad(ta))
    assert close(b.grad, tgrad(tb)), ("d/db", b.grad, tgrad(tb))
    # Value op number
    a = Value(x)
    out = op(a, y)
    out.backward()
    ta = T(x)
    ref = op(ta, y)
    ref.backward()
    assert close(out.data, ref.item())
    assert close(a.grad, tgrad(ta)), ("Value op number", a.grad, tgrad(ta))
    # number op Value
    b = Value(y)
    out = op(x, b)
    out.backward()
    tb = T(y)
    ref = op(x, tb)
    ref.backward()
    assert close(out.data, ref.item())
    assert close(b.grad, tgrad(tb)), ("number op Value", b.grad, tgrad(tb))


@pytest.mark.parametrize("x,y", [(1e300, 1e160), (1e-300, 1e-170), (3.0, 1e155), (0.0, 1e-310), (-1.0, 1e-200)])
def test_division_by_extreme_denominators(x, y):
    # PyTorch computes d(x/y)/dy as -(x/y)/y; y * y would overflow/underflow.
    a, b = Value(x), Value(y)
    out = a / b
    out.backward()
    ta, tb = T(x), T(y)
    ref = ta / tb
    ref.backward()
    assert close(out.data, ref.item())
    assert close(a.grad, tgrad(ta))
    assert close(b.grad, tgrad(tb), abs_=0.0), (b.grad, tgrad(tb))


def test_sum_and_dot():
    vals = [0.3, -1.2, 2.5, 0.8]
    wv = [1.5, -0.5, 0.25, 2.0]
    xs = [Value(v) for v in vals]
    ws = [Value(w) for w in wv]
    s = fastgrad.sum(xs + [xs[0], 1.5], xs[2])
    d = fastgrad.dot(ws, xs)
    dc = fastgrad.dot([2.0, -1.0, 0.5, 3.0], xs)
    out = (s * d).tanh() + dc.sigmoid() * s
    out.backward()

    txs = [T(v) for v in vals]
    tws = [T(w) for w in wv]
    ts = txs[2] + torch.stack(txs + [txs[0]]).sum() + 1.5
    td = (torch.stack(tws) * torch.stack(txs)).sum()
    tdc = (torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.float64) * torch.stack(txs)).sum()
    tout = (ts * td).tanh() + tdc.sigmoid() * ts
    tout.backward()

    assert close(out.data, tout.item())
    for v, t in zip(xs + ws, txs + tws):
        assert close(v.grad, tgrad(t), rel=1e-12, abs_=1e-14), (v.grad, tgrad(t))


def test_neuron_like_graph():
    # what nn.Neuron does: tanh(dot(w, x) + b), with a squared loss
    rng = random.Random(7)
    n = 16
    wv = [rng.uniform(-1, 1) for _ in range(n)]
    xv = [rng.uniform(-1, 1) for _ in range(n)]
    w = [Value(v) for v in wv]
    b = Value(0.1)
    act = (fastgrad.dot(w, xv) + b).tanh()
    loss = (act - 0.5) ** 2
    loss.backward()
    tw = torch.tensor(wv, dtype=torch.float64, requires_grad=True)
    tb = T(0.1)
    tact = ((tw * torch.tensor(xv, dtype=torch.float64)).sum() + tb).tanh()
    tloss = (tact - 0.5) ** 2
    tloss.backward()
    assert close(loss.data, tloss.item())
    assert close(b.grad, tb.grad.item())
    for v, g in zip(w, tw.grad.tolist()):
        assert close(v.grad, g)


# ---------------------------------------------------------------------------
# Random graphs with a fixed seed
# ---------------------------------------------------------------------------


class _Torch:
    leaf = staticmethod(T)

    @staticmethod
    def sum(items):
        return torch.stack([i if torch.is_tensor(i) else torch.tensor(float(i), dtype=torch.float64) for i in items]).sum()

    @staticmethod
    def dot(ws, xs):
        def t(i):
            return i if torch.is_tensor(i) else torch.tensor(float(i), dtype=torch.float64)

        return (torch.stack([t(w) for w in ws]) * torch.stack([t(x) for x in xs])).sum()

    unary = {
        "neg": lambda t: -t,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "exp": torch.exp,
        "log": torch.log,
        "abs": torch.abs,
    }


class _Fastgrad:
    leaf = Value
    sum = staticmethod(fastgrad.sum)
    dot = staticmethod(fastgrad.dot)
    unary = {
        "neg": lambda v: -v,
        "relu": lambda v: v.relu(),
        "tanh": lambda v: v.tanh(),
        "sigmoid": lambda v: v.sigmoid(),
        "exp": lambda v: v.exp(),
        "log": lambda v: v.log(),
        "abs": lambda v: v.abs(),
    }


def random_program(rng):
    n_leaves = rng.randint(1, 5)
    leaves = [round(rng.uniform(-2.0, 2.0), 3) for _ in range(n_leaves)]
    ops = []
    for k in range(rng.randint(3, 20)):
        n = n_leaves + k

        def node():
            return rng.randrange(max(0, n - 3), n) if rng.random() < 0.6 else rng.randrange(n)

        def const():
            return rng.choice([round(rng.uniform(-2.0, 2.0), 2), 2, -1, 0.5])

        def item():
            return ("n", node()) if rng.random() < 0.75 else ("c", const())

        kind = rng.choice(["vv", "vc", "cv", "un", "un", "sum", "dot"])
        if kind in ("vv", "vc", "cv"):
            name = rng.choice(list(BINARY))
            if kind == "vv":
                ops.append(("vv", name, node(), node()))
            else:
                c = rng.choice([2, 3, 0.5, -1, 1.5]) if name == "**" else const()
                ops.append((kind, name, node(), c))
        elif kind == "un":
            ops.append(("un", rng.choice(sorted(_Fastgrad.unary)), node()))
        elif kind == "sum":
            ops.append(("sum", [("n", node())] + [item() for _ in range(rng.randint(0, 4))]))
        else:
            m = rng.randint(1, 4)
            ws = [("n", node())] + [item() for _ in range(m - 1)]
            xs = [item() for _ in range(m)]
            ops.append(("dot", ws, xs))
    return leaves, ops


def build(program, eng):
    leaves, ops = program
    nodes = [eng.leaf(x) for x in leaves]

    def get(item):
        return nodes[item[1]] if item[0] == "n" else item[1]

    for op in ops:
        if op[0] == "vv":
            y = BINARY[op[1]](nodes[op[2]], nodes[op[3]])
        elif op[0] == "vc":
            y = BINARY[op[1]](nodes[op[2]], op[3])
        elif op[0] == "cv":
            y = BINARY[op[1]](op[3], nodes[op[2]])
        elif op[0] == "un":
            y = eng.unary[op[1]](nodes[op[2]])
        elif op[0] == "sum":
            y = eng.sum([get(i) for i in op[1]])
        else:
            y = eng.dot([get(i) for i in op[1]], [get(i) for i in op[2]])
        nodes.append(y)
    return nodes


def _finite_values(nodes):
    # Keep graphs whose forward values are all finite and of moderate size.
    return all(math.isfinite(v.data) and abs(v.data) < 1e6 for v in nodes)


def test_random_graphs_match_torch():
    # The engines are only expected to agree where every intermediate
    # gradient is finite: with an infinite upstream gradient, fastgrad (like
    # micrograd) multiplies by the local derivative (inf * 0 = nan) where
    # PyTorch selects (relu, pow's exponent at base 0 give 0). NaN inputs to
    # relu/abs are excluded by the finite-values filter.
    rng = random.Random(20240531)
    compared = 0
    for _ in range(400):
        program = random_program(rng)
        n_leaves = len(program[0])
        fg = build(program, _Fastgrad)
        if not _finite_values(fg):
            continue
        tt = build(program, _Torch)
        for t in tt[n_leaves:]:
            t.retain_grad()
        fg[-1].backward()
        tt[-1].backward()
        if not all(math.isfinite(tgrad(t)) for t in tt):
            continue
        scale = max(1.0, *(abs(tgrad(t)) for t in tt))
        for u, t in zip(fg, tt):
            assert close(u.data, t.item(), rel=1e-9, abs_=1e-12), (program, u.data, t.item())
            g = tgrad(t)
            assert close(u.grad, g, rel=1e-8, abs_=1e-12 * scale), (program, u.grad, g)
        compared += 1
    assert compared >= 200  # most programs are usable
