"""Modules (fastgrad.nn): micrograd compatibility, fused neurons,
activations, named parameters, train/eval, Dropout, Sequential, state
dicts; gradients against hand-built graphs, micrograd and PyTorch; and the
seed document's code blocks, run verbatim."""

import json
import math

import numpy as np
import pytest

import fastgrad
from fastgrad import (
    MLP,
    SGD,
    Adam,
    Dropout,
    Layer,
    Module,
    Neuron,
    Sequential,
    Value,
    cross_entropy,
    cross_entropy_with_logits,
    manual_seed,
    mse,
    softmax,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def neurons_of(model):
    return [n for layer in model.layers for n in layer.neurons]


def reference_forward(model, xs, act="relu"):
    """micrograd's forward written with plain Value ops: sum(wi*xi) + b, act."""
    acts = {"relu": Value.relu, "tanh": Value.tanh, "sigmoid": Value.sigmoid}
    x = xs
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        out = []
        for n in layer.neurons:
            z = sum((wi * xi for wi, xi in zip(n.w, x)), n.b)
            out.append(acts[act](z) if i != last else z)
        x = out
    return x[0] if len(x) == 1 else x


def resolve(model, dotted):
    """Follow a dotted parameter name through attributes and list indices."""
    obj = model
    for part in dotted.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def randomize(model, seed=0, biases=True):
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data = float(rng.uniform(-1, 1))
    if not biases:
        for n in neurons_of(model):
            n.b.data = 0.0


def state(model):
    return json.dumps(model.state_dict(), sort_keys=True)


X3 = [0.5, -1.25, 2.0]


# ---------------------------------------------------------------------------
# micrograd compatibility: signatures, shapes, parameter order
# ---------------------------------------------------------------------------


def test_micrograd_signatures():
    n = Neuron(3)
    assert len(n.w) == 3 and isinstance(n.b, Value)
    assert Neuron(3, nonlin=False).nonlin is False
    assert Neuron(3, True).nonlin is True
    layer = Layer(3, 4)
    assert len(layer.neurons) == 4 and all(len(n.w) == 3 for n in layer.neurons)
    lin = Layer(3, 2, nonlin=False)          # kwargs reach the neurons, as in micrograd
    assert all(n.nonlin is False for n in lin.neurons)
    m = MLP(3, [4, 4, 1])
    assert [len(layer.neurons) for layer in m.layers] == [4, 4, 1]
    assert [len(layer.neurons[0].w) for layer in m.layers] == [3, 4, 4]


def test_last_layer_of_mlp_is_linear_and_hidden_layers_are_not():
    m = MLP(2, [3, 3, 2])
    assert [n.nonlin for n in m.layers[0].neurons] == [True] * 3
    assert [n.nonlin for n in m.layers[1].neurons] == [True] * 3
    assert [n.nonlin for n in m.layers[2].neurons] == [False] * 2
    # behaviourally: force a large negative pre-activation in the last layer
    for n in m.layers[2].neurons:
        n.b.data = -100.0
    out = m([0.1, 0.2])
    assert all(o.data < -50 for o in out)      # not clipped at 0 by a relu


def test_one_output_returns_a_value_else_a_list():
    assert isinstance(MLP(2, [3, 1])([1.0, 2.0]), Value)
    out = MLP(2, [3, 2])([1.0, 2.0])
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(o, Value) for o in out)
    assert isinstance(Layer(2, 1)([1.0, 2.0]), Value)
    assert isinstance(Layer(2, 3)([1.0, 2.0]), list)
    assert isinstance(Neuron(2)([1.0, 2.0]), Value)


def test_width_one_hidden_layer_feeds_the_next_layer():
    m = MLP(2, [1, 3, 1], act="tanh")
    randomize(m, 4)
    xs = [0.3, -0.4]
    assert m(xs).data == pytest.approx(
        reference_forward(m, [Value(x) for x in xs], act="tanh").data, rel=1e-14)


def test_inputs_may_be_values_numbers_or_a_numpy_row():
    manual_seed(0)
    m = MLP(3, [4, 2])
    randomize(m, 1)
    expected = [o.data for o in m([Value(x) for x in X3])]
    assert [o.data for o in m(X3)] == expected
    assert [o.data for o in m(np.array(X3))] == expected
    assert [o.data for o in m(np.array([X3, X3])[1])] == expected
    assert [o.data for o in m(tuple(X3))] == expected
    assert [o.data for o in m([Value(X3[0]), X3[1], np.float64(X3[2])])] == expected
    ints = [1, -2, 3]
    assert [o.data for o in m(np.array(ints))] == [o.data for o in m([float(i) for i in ints])]


def test_single_value_input_to_a_one_input_model():
    m = MLP(1, [3, 1])
    randomize(m, 2)
    assert m(Value(0.7)).data == m([0.7]).data
    n = Neuron(1)
    assert n(Value(2.0)).data == n([2.0]).data


def test_wrong_input_length_is_an_error():
    with pytest.raises(ValueError):
        Neuron(3)([1.0, 2.0])
    with pytest.raises(ValueError):
        MLP(3, [2, 1])([1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bad_sizes_are_value_errors(bad):
    with pytest.raises(ValueError):
        Neuron(bad)
    with pytest.raises(ValueError):
        Layer(2, bad)
    with pytest.raises(ValueError):
        MLP(2, [3, bad])


def test_parameter_count_and_order_match_micrograd():
    m = MLP(2, [16, 16, 1])
    assert len(m.parameters()) == 337           # micrograd's demo model
    expected = []
    for layer in m.layers:
        for n in layer.neurons:
            expected.extend(n.w)
            expected.append(n.b)
    assert len(expected) == len(m.parameters())
    assert all(a is b for a, b in zip(m.parameters(), expected))
    layer = Layer(3, 2)
    assert all(a is b for a, b in zip(
        layer.parameters(), [*layer.neurons[0].w, layer.neurons[0].b,
                             *layer.neurons[1].w, layer.neurons[1].b]))
    n = Neuron(4)
    assert all(a is b for a, b in zip(n.parameters(), [*n.w, n.b]))


def test_default_init_is_micrograds():
    manual_seed(0)
    m = MLP(4, [50, 50, 3])
    ws = [w.data for n in neurons_of(m) for w in n.w]
    assert all(-1.0 <= w <= 1.0 for w in ws)
    assert min(ws) < -0.9 and max(ws) > 0.9          # uniform over [-1, 1]
    assert all(n.b.data == 0.0 for n in neurons_of(m))


def test_repr_matches_micrograd():
    mg_nn = pytest.importorskip("micrograd.nn")
    assert repr(MLP(2, [3, 2, 1])) == repr(mg_nn.MLP(2, [3, 2, 1]))
    assert repr(Layer(2, 2)) == repr(mg_nn.Layer(2, 2))
    assert repr(Neuron(3, nonlin=False)) == repr(mg_nn.Neuron(3, nonlin=False))


# ---------------------------------------------------------------------------
# forward values and gradients: hand-built graph, micrograd, PyTorch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("nouts", [[4, 4, 1], [5, 3]])
def test_mlp_equals_hand_built_micrograd_graph(act, nouts):
    manual_seed(1)
    m = MLP(3, nouts, act=act)
    randomize(m, 7)
    xa = [Value(x) for x in X3]
    xb = [Value(x) for x in X3]
    out = m(xa)
    ref = reference_forward(m, xb, act=act)
    outs = out if isinstance(out, list) else [out]
    refs = ref if isinstance(ref, list) else [ref]
    assert [o.data for o in outs] == pytest.approx([r.data for r in refs], rel=1e-14)
    # a scalar of all the outputs, so every output gets a gradient
    loss = fastgrad.sum([o * (k + 1.5) for k, o in enumerate(outs)])
    m.zero_grad()
    loss.backward()
    grads_fused = [p.grad for p in m.parameters()] + [x.grad for x in xa]
    m.zero_grad()
    ref_loss = sum((r * (k + 1.5) for k, r in enumerate(refs)), Value(0.0))
    ref_loss.backward()
    grads_ref = [p.grad for p in m.parameters()] + [x.grad for x in xb]
    assert grads_fused == pytest.approx(grads_ref, rel=1e-12, abs=1e-15)
    assert any(g != 0.0 for g in grads_fused)


def test_mlp_equals_micrograd_with_copied_weights():
    mg_nn = pytest.importorskip("micrograd.nn")
    mg_engine = pytest.importorskip("micrograd.engine")
    for nouts in ([4, 4, 1], [5, 3, 2]):
        manual_seed(2)
        ours = MLP(3, nouts)
        randomize(ours, 3)
        theirs = mg_nn.MLP(3, nouts)
        assert len(theirs.parameters()) == len(ours.parameters())
        for a, b in zip(theirs.parameters(), ours.parameters()):
            a.data = b.data
        xa = [Value(x) for x in X3]
        xb = [mg_engine.Value(x) for x in X3]
        o, r = ours(xa), theirs(xb)
        os_ = o if isinstance(o, list) else [o]
        rs = r if isinstance(r, list) else [r]
        assert [v.data for v in os_] == pytest.approx([v.data for v in rs], rel=1e-14)
        loss_o = sum(v * v for v in os_)
        loss_r = sum(v * v for v in rs)
        loss_o.backward()
        loss_r.backward()
        assert [p.grad for p in ours.parameters()] == pytest.approx(
            [p.grad for p in theirs.parameters()], rel=1e-12, abs=1e-15)
        assert [x.grad for x in xa] == pytest.approx([x.grad for x in xb], rel=1e-12, abs=1e-15)


def test_micrograd_demo_training_loop_runs_unchanged_and_agrees():
    """micrograd's demo.ipynb step (max-margin + L2, manual SGD) with only
    the imports changed gives micrograd's numbers."""
    mg_nn = pytest.importorskip("micrograd.nn")
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (20, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, 1, -1)

    def demo_steps(model, steps=3):
        history = []
        for k in range(steps):
            inputs = [list(map(float, xrow)) for xrow in X]
            scores = list(map(model, inputs))
            losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y.tolist(), scores)]
            data_loss = sum(losses) * (1.0 / len(losses))
            alpha = 1e-4
            reg_loss = alpha * sum((p * p for p in model.parameters()))
            total_loss = data_loss + reg_loss
            model.zero_grad()
            total_loss.backward()
            learning_rate = 1.0 - 0.9 * k / 100
            for p in model.parameters():
                p.data -= learning_rate * p.grad
            history.append(total_loss.data)
        return history, [p.data for p in model.parameters()]

    manual_seed(0)
    ours = MLP(2, [16, 16, 1])
    theirs = mg_nn.MLP(2, [16, 16, 1])
    for a, b in zip(theirs.parameters(), ours.parameters()):
        a.data = b.data
    h_ours, p_ours = demo_steps(ours)
    h_theirs, p_theirs = demo_steps(theirs)
    assert h_ours == pytest.approx(h_theirs, rel=1e-10)
    assert p_ours == pytest.approx(p_theirs, rel=1e-9, abs=1e-12)


def _torch_mlp(torch, model, act):
    Ws, bs = [], []
    for layer in model.layers:
        Ws.append(torch.tensor([[w.data for w in n.w] for n in layer.neurons],
                               dtype=torch.float64, requires_grad=True))
        bs.append(torch.tensor([n.b.data for n in layer.neurons],
                               dtype=torch.float64, requires_grad=True))
    f = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[act]

    def forward(x):
        h = x
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = W @ h + b
            if i != len(Ws) - 1:
                h = f(h)
        return h

    def grads():
        out = []
        for W, b in zip(Ws, bs):
            for j in range(W.shape[0]):
                out.extend(W.grad[j].tolist())
                out.append(b.grad[j].item())
        return out

    return forward, grads, Ws + bs


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_mlp_cross_entropy_gradients_match_torch(act):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    manual_seed(3)
    model = MLP(4, [6, 5, 3], act=act)
    randomize(model, 11)
    rng = np.random.default_rng(5)
    X = rng.normal(0, 1.5, (5, 4)).tolist()
    Y = [0, 2, 1, 1, 0]
    forward, torch_grads, tparams = _torch_mlp(torch, model, act)

    # fastgrad: mean cross-entropy over a small batch, both spellings
    for fused in (True, False):
        model.zero_grad()
        xs = [[Value(v) for v in row] for row in X]
        losses = []
        for row, t in zip(xs, Y):
            logits = model(row)
            losses.append(cross_entropy_with_logits(logits, t) if fused
                          else cross_entropy(softmax(logits), t))
        loss = fastgrad.sum(losses) / len(losses)
        loss.backward()

        tx = torch.tensor(X, dtype=torch.float64, requires_grad=True)
        for p in tparams:
            p.grad = None
        tlogits = torch.stack([forward(tx[i]) for i in range(len(X))])
        tloss = F.cross_entropy(tlogits, torch.tensor(Y))
        tloss.backward()
        assert loss.data == pytest.approx(tloss.item(), rel=1e-13)
        np.testing.assert_allclose([p.grad for p in model.parameters()], torch_grads(),
                                   rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose([[v.grad for v in row] for row in xs], tx.grad.numpy(),
                                   rtol=1e-11, atol=1e-14)


def test_mlp_regression_gradients_match_torch():
    torch = pytest.importorskip("torch")
    manual_seed(4)
    model = MLP(3, [5, 1])
    randomize(model, 12)
    forward, torch_grads, _ = _torch_mlp(torch, model, "relu")
    out = model(X3)
    loss = mse(out, 0.25)
    loss.backward()
    tout = forward(torch.tensor(X3, dtype=torch.float64))
    tloss = ((tout - 0.25) ** 2).sum()
    tloss.backward()
    assert loss.data == pytest.approx(tloss.item(), rel=1e-14)
    np.testing.assert_allclose([p.grad for p in model.parameters()], torch_grads(),
                               rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# one node per neuron; activations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("nin", [1, 3, 8])
@pytest.mark.parametrize("kw", [{}, {"nonlin": False}, {"act": "tanh"}, {"act": "sigmoid"}])
def test_a_neuron_is_one_node(nin, kw):
    n = Neuron(nin, **kw)
    xs = [Value(float(i) + 0.5) for i in range(nin)]
    y = n(xs)
    assert y._op                                  # not a leaf
    assert len(y._prev) == 2 * nin + 1
    assert y._prev == set(n.w) | set(xs) | {n.b}
    for out in Layer(nin, 3, **kw)(xs):
        assert len(out._prev) == 2 * nin + 1


@pytest.mark.parametrize("act,f", [
    ("relu", lambda z: max(z, 0.0)),
    ("tanh", math.tanh),
    ("sigmoid", lambda z: 1 / (1 + math.exp(-z))),
    ("linear", lambda z: z),
])
def test_neuron_activations(act, f):
    n = Neuron(3, act=act)
    for i, w in enumerate([0.4, -0.3, 0.9]):
        n.w[i].data = w
    n.b.data = -0.2
    for xs in ([0.5, 1.0, -1.0], [1.0, 2.0, 1.0], [-1.0, 0.2, -0.7]):
        z = -0.2 + 0.4 * xs[0] - 0.3 * xs[1] + 0.9 * xs[2]
        vs = [Value(x) for x in xs]
        y = n(vs)
        assert y.data == pytest.approx(f(z), rel=1e-14, abs=1e-300)
        y.backward()
        h = 1e-6
        slope = (f(z + h) - f(z - h)) / (2 * h)
        if act == "relu" and abs(z) < 1e-3:
            continue
        assert vs[2].grad == pytest.approx(0.9 * slope, rel=1e-6, abs=1e-9)


def test_nonlin_false_and_linear_activation_are_identity():
    a, b = Neuron(2, nonlin=False), Neuron(2, act="linear")
    for n in (a, b):
        n.w[0].data, n.w[1].data, n.b.data = -1.0, -1.0, -5.0
        assert n([1.0, 1.0]).data == -7.0


def test_mlp_activation_choice_applies_to_hidden_layers():
    m = MLP(2, [3, 2], act="sigmoid")
    randomize(m, 8)
    got = [o.data for o in m([0.4, -0.9])]
    ref = [o.data for o in reference_forward(m, [Value(0.4), Value(-0.9)], act="sigmoid")]
    assert got == pytest.approx(ref, rel=1e-14)


@pytest.mark.parametrize("make", [
    lambda: Neuron(2, act="gelu"),
    lambda: Layer(2, 3, act="gelu"),
    lambda: MLP(2, [3, 1], act="gelu"),
    lambda: MLP(2, [1], act="gelu"),     # no hidden layer: still a typo to report
    lambda: Neuron(2, nonlin=False, act="gelu"),
])
def test_unknown_activation_is_value_error_quoting_it(make):
    with pytest.raises(ValueError, match="'gelu'"):
        make()


# ---------------------------------------------------------------------------
# named parameters, zero_grad, train/eval
# ---------------------------------------------------------------------------


def test_named_parameters_are_dotted_unique_and_in_parameters_order():
    m = MLP(3, [4, 2])
    named = list(m.named_parameters())
    names = [n for n, _ in named]
    assert len(set(names)) == len(names)
    assert len(named) == len(m.parameters())
    assert all(a is b for (_, a), b in zip(named, m.parameters()))
    for name, p in named:
        assert "." in name
        assert resolve(m, name) is p          # the name says where it lives
    biases = {id(n.b) for n in neurons_of(m)}
    for name, p in named:
        assert name.split(".")[-1] == "b" if id(p) in biases else name.split(".")[-1] != "b"
    assert sum(name.endswith(".b") for name in names) == 6


def test_named_parameters_of_sequential_and_custom_module():
    class Net(Module):
        def __init__(self):
            self.body = MLP(2, [3])
            self.head = Neuron(3, nonlin=False)
            self.scale = Value(1.5)

        def __call__(self, x):
            return self.head(self.body(x)) * self.scale

    net = Net()
    named = dict(net.named_parameters())
    assert len(named) == len(net.body.parameters()) + 4 + 1
    for name, p in named.items():
        assert resolve(net, name) is p
    assert "scale" in named
    seq = Sequential(Layer(2, 3), Dropout(0.1), Layer(3, 1))
    for name, p in seq.named_parameters():
        assert resolve(seq, name) is p
    assert len(seq.parameters()) == 9 + 4


def test_zero_grad():
    m = MLP(3, [4, 1])
    randomize(m, 5)
    (m(X3) * 3.0).backward()
    assert any(p.grad != 0 for p in m.parameters())
    m.zero_grad()
    assert all(p.grad == 0.0 for p in m.parameters())


def test_train_and_eval_are_recursive_and_return_self():
    inner = MLP(2, [3, 2], dropout=0.5)
    seq = Sequential(inner, Dropout(0.2), Layer(2, 1))
    assert seq.training is True
    assert seq.eval() is seq
    everything = [seq, inner, inner.dropout, seq[1], seq[2], *inner.layers,
                  *neurons_of(inner), *seq[2].neurons]
    assert all(m.training is False for m in everything)
    assert seq.train() is seq
    assert all(m.training is True for m in everything)
    assert seq.train(False) is seq
    assert all(m.training is False for m in everything)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_dropout_zeroes_about_p_of_the_inputs(p):
    manual_seed(123)
    n = 100_000
    xs = [Value(1.0) for _ in range(n)]
    out = Dropout(p)(xs)
    assert len(out) == n
    zeros = sum(1 for o in out if o.data == 0.0)
    # binomial std is sqrt(p(1-p)/n) < 0.0016: 0.01 is > 6 standard deviations
    assert abs(zeros / n - p) < 0.01


@pytest.mark.parametrize("p,scale", [(0.5, 2.0), (0.75, 4.0), (0.2, 1.25)])
def test_dropout_scales_kept_inputs_exactly(p, scale):
    manual_seed(7)
    rng = np.random.default_rng(0)
    data = rng.uniform(0.5, 2.0, 2000).tolist()       # never 0
    xs = [Value(x) for x in data]
    out = Dropout(p)(xs)
    kept = [(x, o.data) for x, o in zip(data, out) if o.data != 0.0]
    assert 0 < len(kept) < len(data)
    for x, y in kept:
        assert y == x * scale


def test_dropout_scale_for_inexact_p():
    manual_seed(7)
    xs = [Value(3.0) for _ in range(500)]
    out = Dropout(0.3)(xs)
    kept = [o.data for o in out if o.data != 0.0]
    assert kept and all(k == pytest.approx(3.0 / 0.7, rel=1e-15) for k in kept)


def test_dropout_gradient_is_mask_times_scale():
    manual_seed(9)
    xs = [Value(float(i + 1)) for i in range(200)]
    out = Dropout(0.5)(xs)
    fastgrad.sum(out).backward()
    for x, o in zip(xs, out):
        assert x.grad == (2.0 if o.data != 0.0 else 0.0)


def test_dropout_eval_is_identity():
    d = Dropout(0.9)
    assert d.eval() is d
    xs = [Value(float(i)) for i in range(100)]
    out = d(xs)
    assert len(out) == len(xs) and all(a is b for a, b in zip(out, xs))
    v = Value(2.0)
    assert d(v) is v


def test_dropout_zero_p_is_identity_in_training():
    xs = [Value(float(i)) for i in range(100)]
    assert all(a is b for a, b in zip(Dropout(0.0)(xs), xs))


def test_dropout_on_a_single_value_in_training():
    manual_seed(0)
    d = Dropout(0.5)
    seen = set()
    for _ in range(100):
        out = d(Value(3.0))
        assert isinstance(out, Value)
        seen.add(out.data)
    assert seen == {0.0, 6.0}


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_dropout_p_outside_unit_interval_is_value_error(p):
    with pytest.raises(ValueError, match=repr(p)):
        Dropout(p)
    with pytest.raises(ValueError):
        MLP(2, [3, 1], dropout=p)


# ---------------------------------------------------------------------------
# manual_seed
# ---------------------------------------------------------------------------


def test_manual_seed_makes_init_reproducible():
    manual_seed(42)
    a = MLP(3, [4, 4, 2]).state_dict()
    manual_seed(42)
    b = MLP(3, [4, 4, 2]).state_dict()
    manual_seed(43)
    c = MLP(3, [4, 4, 2]).state_dict()
    assert a == b
    assert a != c


def test_manual_seed_makes_dropout_reproducible():
    xs = [Value(1.0) for _ in range(1000)]
    manual_seed(5)
    m1 = [o.data for o in Dropout(0.5)(xs)]
    manual_seed(5)
    m2 = [o.data for o in Dropout(0.5)(xs)]
    manual_seed(6)
    m3 = [o.data for o in Dropout(0.5)(xs)]
    assert m1 == m2
    assert m1 != m3


def test_manual_seed_makes_a_training_run_with_dropout_reproducible():
    def run():
        manual_seed(2024)
        model = MLP(2, [8, 8, 1], dropout=0.3)
        opt = SGD(model.parameters(), lr=0.05)
        for x, y in [([0.5, -1.0], 1.0), ([1.5, 0.2], -1.0), ([0.0, 0.3], 0.5)] * 3:
            loss = mse(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.state_dict()

    assert run() == run()


# ---------------------------------------------------------------------------
# MLP(dropout=...)
# ---------------------------------------------------------------------------


def test_mlp_dropout_acts_between_layers_only_and_only_in_training():
    manual_seed(8)
    model = MLP(3, [40, 1], act="tanh", dropout=0.5)
    randomize(model, 21)
    hidden = model.layers[0]
    head = model.layers[1].neurons[0]
    x = [0.3, -0.8, 0.5]

    model.eval()
    h = [v.data for v in hidden(x)]
    eval_out = model(x)
    assert eval_out.data == pytest.approx(reference_forward(model, x, act="tanh").data,
                                          rel=1e-14)

    model.train()
    dropped_any = kept_any = False
    for _ in range(5):
        xs = [Value(v) for v in x]
        model.zero_grad()
        out = model(xs)
        out.backward()
        # d out / d w_head_j is the (dropped-out) hidden activation j
        h_seen = [w.grad for w in head.w]
        for hj, sj in zip(h, h_seen):
            assert sj == 0.0 or sj == pytest.approx(2.0 * hj, rel=1e-14)
        dropped_any |= any(sj == 0.0 for sj in h_seen)
        kept_any |= any(sj != 0.0 for sj in h_seen)
        # no dropout after the last layer: the output is exactly the head's sum
        expected = head.b.data + math.fsum(w.data * s for w, s in zip(head.w, h_seen))
        assert out.data == pytest.approx(expected, rel=1e-12, abs=1e-12)
        # no dropout on the input: d out / d w_hidden_ji = g_j * x_i with g_j = d out / d b_j
        for n in hidden.neurons:
            if n.b.grad != 0.0:
                assert [w.grad for w in n.w] == pytest.approx(
                    [n.b.grad * xi for xi in x], rel=1e-12)
    assert dropped_any and kept_any


def test_mlp_dropout_after_every_hidden_layer():
    manual_seed(10)
    model = MLP(2, [30, 30, 1], act="tanh", dropout=0.5)
    randomize(model, 22)
    model.eval()
    h2 = [v.data for v in model.layers[1](model.layers[0]([0.4, 0.1]))]
    model.train()
    model.zero_grad()
    model([0.4, 0.1]).backward()
    seen = [w.grad for w in model.layers[2].neurons[0].w]
    # with dropout after layer 1 only, every seen value would be 0 or 2*h2
    # exactly; dropout after layer 0 as well changes layer 1's inputs
    assert any(s != 0.0 and s != pytest.approx(2 * h, rel=1e-12) for s, h in zip(seen, h2))
    assert any(s == 0.0 for s in seen)


# ---------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------


def test_sequential_composes_in_order():
    manual_seed(12)
    l1, l2 = Layer(3, 4, act="tanh"), Layer(4, 2, nonlin=False)
    seq = Sequential(l1, Dropout(0.5), lambda hs: [h * 2.0 for h in hs], l2)
    seq.eval()
    got = [o.data for o in seq(X3)]
    ref = [o.data for o in l2([h * 2.0 for h in l1(X3)])]
    assert got == ref
    assert len(seq) == 4 and seq[0] is l1 and seq[3] is l2
    assert list(iter(seq))[1].p == 0.5
    assert all(a is b for a, b in zip(seq.parameters(), l1.parameters() + l2.parameters()))


def test_sequential_rejects_non_callables():
    with pytest.raises(TypeError):
        Sequential(Layer(2, 2), 3)


# ---------------------------------------------------------------------------
# state_dict / load_state_dict
# ---------------------------------------------------------------------------


def test_state_dict_round_trip_through_json():
    manual_seed(1)
    a = MLP(3, [4, 2])
    randomize(a, 30)
    manual_seed(2)
    b = MLP(3, [4, 2])
    assert state(a) != state(b)
    result = b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    assert [p.data for p in a.parameters()] == [p.data for p in b.parameters()]
    assert [o.data for o in a(X3)] == [o.data for o in b(X3)]
    # and the same objects are still the parameters (loaded in place)
    named_before = {n: id(p) for n, p in b.named_parameters()}
    b.load_state_dict(a.state_dict())
    assert {n: id(p) for n, p in b.named_parameters()} == named_before


def test_state_dict_is_a_snapshot():
    m = MLP(2, [2, 1])
    sd = m.state_dict()
    frozen = json.dumps(sd, sort_keys=True)
    for p in m.parameters():
        p.data += 1.0
    assert json.dumps(sd, sort_keys=True) == frozen


def _other_state(seed=99):
    manual_seed(seed)
    src = MLP(3, [4, 2])
    randomize(src, seed)
    return src.state_dict()


def test_strict_load_reports_every_problem_at_once_and_changes_nothing():
    manual_seed(3)
    m = MLP(3, [4, 2])
    before = state(m)
    bad = _other_state()
    keys = list(bad)
    missing = keys[1]
    del bad[missing]                               # missing
    bad["layers.7.neurons.0.w"] = [1.0, 2.0]       # unexpected
    sized = keys[2]
    bad[sized] = bad[sized][:-1]                   # mis-sized
    scalar = next(k for k in keys if k.endswith(".b") and k != missing)
    bad[scalar] = "0.5"                            # non-numeric
    listed = next(k for k in keys if k.endswith(".w") and k != sized)
    bad[listed] = [None] + bad[listed][1:]         # non-numeric inside a list
    with pytest.raises(ValueError) as info:
        m.load_state_dict(bad)
    msg = str(info.value)
    for name in (missing, "layers.7.neurons.0.w", sized, scalar, listed):
        assert name in msg, f"{name!r} not named in: {msg}"
    assert state(m) == before


@pytest.mark.parametrize("value", [True, None, "1.0", [1.0], {"x": 1}])
def test_non_numeric_scalar_entry_is_rejected(value):
    m = MLP(3, [4, 2])
    before = state(m)
    bad = _other_state()
    key = next(k for k in bad if k.endswith(".b"))
    bad[key] = value
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        m.load_state_dict(bad)
    assert state(m) == before


def test_non_strict_load_returns_missing_and_unexpected_keys():
    manual_seed(4)
    m = MLP(3, [4, 2])
    good = _other_state()
    partial = dict(good)
    missing = "layers.1.neurons.0.w"
    del partial[missing]
    partial["head.bias"] = 0.0
    kept = m.state_dict()[missing]
    result = m.load_state_dict(partial, strict=False)
    assert list(result.missing_keys) == [missing]
    assert list(result.unexpected_keys) == ["head.bias"]
    now = m.state_dict()
    assert now[missing] == kept                     # untouched
    for k, v in partial.items():
        if k != "head.bias":
            assert now[k] == v                      # loaded


def test_non_strict_load_still_rejects_mis_sized_entries():
    m = MLP(3, [4, 2])
    before = state(m)
    bad = _other_state()
    bad["layers.0.neurons.0.w"] = [0.0]
    with pytest.raises(ValueError, match=r"layers\.0\.neurons\.0\.w"):
        m.load_state_dict(bad, strict=False)
    assert state(m) == before


def test_load_state_dict_wants_a_dict():
    with pytest.raises(TypeError):
        MLP(2, [1]).load_state_dict([("layers.0.neurons.0.b", 0.0)])


# ---------------------------------------------------------------------------
# The seed document's code blocks, verbatim
# (/work/shared/SEED-training-and-regularization.md)
# ---------------------------------------------------------------------------

SEED_CORE_LOOP = """\
loss = loss_fn(model(x), y)
optimizer.zero_grad()
loss.backward()
optimizer.step()
"""

SEED_CLASSIFICATION = """\
logits = model(x)
probs = softmax(logits)
loss = cross_entropy(probs, target)
"""

SEED_MINIBATCH = """\
for x_batch, y_batch in DataLoader(dataset, batch_size=32, shuffle=True):
    batch_loss = Value(0.0)
    for x_vals, y in zip(x_batch, y_batch):
        xv = [Value(v) for v in x_vals]
        logits = model(xv)
        probs = softmax(logits if isinstance(logits, list) else [logits])
        batch_loss = batch_loss + cross_entropy(probs, y)
    batch_loss = batch_loss / len(x_batch)
    optimizer.zero_grad()
    batch_loss.backward()
    optimizer.step()
"""

SEED_CHECKPOINTS = """\
save_checkpoint(model, optimizer, "ckpt.json")
load_checkpoint(model, optimizer, "ckpt.json")
"""


def seed_namespace(**names):
    ns = {}
    exec("from fastgrad import *", ns)
    ns.update(names)
    return ns


def test_seed_block_core_training_loop():
    manual_seed(0)
    model = MLP(3, [4, 1])
    randomize(model, 40)
    lr = 0.05
    ns = seed_namespace(model=model, x=[Value(v) for v in X3], y=1.5, loss_fn=mse,
                        optimizer=SGD(model.parameters(), lr=lr))
    for p in model.parameters():
        p.grad = 123.0                          # stale grads that zero_grad must clear
    before = [p.data for p in model.parameters()]
    # the gradients a clean backward gives at the starting point
    twin = MLP(3, [4, 1])
    twin.load_state_dict(model.state_dict())
    mse(twin(X3), 1.5).backward()
    clean = [p.grad for p in twin.parameters()]

    exec(SEED_CORE_LOOP, ns)

    assert isinstance(ns["loss"], Value) and ns["loss"].data > 0
    assert [p.grad for p in model.parameters()] == pytest.approx(clean, rel=1e-14, abs=1e-300)
    assert any(g != 0.0 for g in clean)
    assert [p.data for p in model.parameters()] == pytest.approx(
        [b - lr * g for b, g in zip(before, clean)], rel=1e-14, abs=1e-300)
    # and the step made the loss smaller
    assert mse(model(X3), 1.5).data < ns["loss"].data


def test_seed_block_classification_stack():
    manual_seed(1)
    model = MLP(2, [8, 3])
    randomize(model, 41)
    ns = seed_namespace(model=model, x=[Value(0.3), Value(-0.7)], target=2)

    exec(SEED_CLASSIFICATION, ns)

    logits, probs, loss = ns["logits"], ns["probs"], ns["loss"]
    assert len(logits) == 3 and len(probs) == 3
    assert math.fsum(p.data for p in probs) == pytest.approx(1.0, abs=1e-15)
    assert loss.data == pytest.approx(-math.log(probs[2].data), rel=1e-15)
    assert loss.data == pytest.approx(
        cross_entropy_with_logits([Value(v.data) for v in logits], 2).data, rel=1e-13)
    loss.backward()
    assert any(p.grad != 0.0 for p in model.parameters())


def _three_blobs(n_per_class=22, seed=0):
    rng = np.random.default_rng(seed)
    centers = [(-2.0, 0.0), (2.0, 0.0), (0.0, 2.5)]
    data = []
    for label, (cx, cy) in enumerate(centers):
        for _ in range(n_per_class):
            data.append(((cx + rng.normal(0, 0.4), cy + rng.normal(0, 0.4)), label))
    return data


def _mean_ce(model, dataset):
    with fastgrad.no_grad():
        return math.fsum(cross_entropy_with_logits(model(list(x)), y).data
                         for x, y in dataset) / len(dataset)


@pytest.mark.parametrize("as_arrays", [False, True])
def test_seed_block_minibatch_training(as_arrays):
    manual_seed(2)
    dataset = _three_blobs()                       # 66 samples -> 3 batches per epoch
    model = MLP(2, [8, 3])
    optimizer = Adam(model.parameters(), lr=0.05)
    data = dataset
    if as_arrays:
        data = (np.array([x for x, _ in dataset]), np.array([y for _, y in dataset]))
    ns = seed_namespace(model=model, optimizer=optimizer, dataset=data)
    start = _mean_ce(model, dataset)

    epochs = 8
    for _ in range(epochs):
        exec(SEED_MINIBATCH, ns)

    assert optimizer.state_dict()["state"][0]["step"] == epochs * 3
    assert len(ns["x_batch"]) == 66 - 2 * 32       # the last batch is kept
    end = _mean_ce(model, dataset)
    assert end < 0.5 * start


def test_seed_block_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manual_seed(3)
    model = MLP(2, [4, 2])
    optimizer = Adam(model.named_parameters(), lr=0.01)
    for x, t in [([0.5, 1.0], 0), ([-1.0, 0.2], 1)] * 2:
        loss = cross_entropy_with_logits(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model_state = state(model)
    opt_state = json.dumps(optimizer.state_dict(), sort_keys=True)
    ns = seed_namespace(model=model, optimizer=optimizer)

    exec(SEED_CHECKPOINTS, ns)

    saved = json.loads((tmp_path / "ckpt.json").read_text())   # JSON, not pickle
    assert isinstance(saved, dict)
    assert state(model) == model_state
    assert json.dumps(optimizer.state_dict(), sort_keys=True) == opt_state

    # disturb both, then the block's load line puts them back exactly
    for p in model.parameters():
        p.data += 0.5
    model.zero_grad()
    optimizer.step()
    assert state(model) != model_state
    exec(SEED_CHECKPOINTS.splitlines()[1], ns)
    assert state(model) == model_state
    assert json.dumps(optimizer.state_dict(), sort_keys=True) == opt_state


def test_state_dict_refuses_parameters_it_cannot_name():
    """A micrograd-style module that overrides parameters() and keeps Values
    where the attribute walk can't see them must not checkpoint silently
    without them."""

    class Hidden(fastgrad.nn.Module):
        def __init__(self):
            self.table = {"a": Value(1.0), "b": Value(2.0)}

        def parameters(self):
            return list(self.table.values())

    class Visible(fastgrad.nn.Module):
        def __init__(self):
            self.w = [Value(1.0), Value(2.0)]

        def parameters(self):
            return self.w

    with pytest.raises(TypeError, match=r"Hidden.state_dict\(\): 2 of the 2 Values"):
        Hidden().state_dict()
    hidden = Hidden()
    with pytest.raises(TypeError, match=r"load_state_dict\(\): 2 of the 2"):
        hidden.load_state_dict({})
    assert [p.data for p in hidden.parameters()] == [1.0, 2.0]
    assert Visible().state_dict() == {"w": [1.0, 2.0]}
