"""Optimizers (fastgrad.optim): update rules against hand derivations and
torch.optim (float64), weight-decay filtering, param groups, validation,
and state dicts (JSON-able, bit-exact resumption, atomic loading)."""

import copy
import json
import math

import numpy as np
import pytest

import fastgrad
from fastgrad import MLP, SGD, Adam, AdamW, Momentum, Value

N = 7
STEPS = 10
RNG = np.random.default_rng(2024)
INIT = RNG.normal(0, 1, N).tolist()
GRADS = RNG.normal(0, 1, (STEPS, N)).tolist()   # a different gradient every step


def values(xs=INIT):
    return [Value(x) for x in xs]


def run(opt, params, grads=GRADS):
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()
    return [p.data for p in params]


def torch_run(torch, make_opt, grads=GRADS, init=INIT):
    t = torch.tensor(init, dtype=torch.float64, requires_grad=True)
    opt = make_opt([t])
    for g in grads:
        t.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return t.detach().tolist()


def snapshot(opt):
    return json.dumps(opt.state_dict(), sort_keys=True)


# ---------------------------------------------------------------------------
# update rules vs torch.optim
# ---------------------------------------------------------------------------

CASES = [
    ("sgd", lambda p: SGD(p, lr=0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    ("sgd_momentum", lambda p: SGD(p, lr=0.1, momentum=0.9),
     lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("sgd_dampening", lambda p: SGD(p, lr=0.05, momentum=0.8, dampening=0.3),
     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.3)),
    ("sgd_nesterov", lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True),
     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd_wd", lambda p: SGD(p, lr=0.1, momentum=0.5, weight_decay=0.05),
     lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.5, weight_decay=0.05)),
    ("sgd_nesterov_wd", lambda p: SGD(p, lr=0.1, momentum=0.7, nesterov=True, weight_decay=0.2),
     lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.7, nesterov=True, weight_decay=0.2)),
    ("momentum", lambda p: Momentum(p, lr=0.1),
     lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("adam", lambda p: Adam(p, lr=0.01), lambda t, p: t.optim.Adam(p, lr=0.01)),
    ("adam_hyper", lambda p: Adam(p, lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     lambda t, p: t.optim.Adam(p, lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
     lambda t, p: t.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ("adamw_default", lambda p: AdamW(p), lambda t, p: t.optim.AdamW(p)),
    ("adamw_hyper", lambda p: AdamW(p, lr=0.1, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.3),
     lambda t, p: t.optim.AdamW(p, lr=0.1, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.3)),
]


@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_optim_over_ten_steps(name, ours, theirs):
    torch = pytest.importorskip("torch")
    params = values()
    got = run(ours(params), params)
    expected = torch_run(torch, lambda p: theirs(torch, p))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # the run actually moved the parameters
    assert not np.allclose(got, INIT)


def test_named_parameters_decay_matches_torch_with_bias_group_undecayed():
    torch = pytest.importorskip("torch")
    fastgrad.manual_seed(5)
    model = MLP(3, [4, 2])
    for n in (n for layer in model.layers for n in layer.neurons):
        n.b.data = 0.5          # non-zero biases, so decaying them would show
    named = list(model.named_parameters())
    init = [p.data for _, p in named]
    grads = np.random.default_rng(0).normal(0, 1, (STEPS, len(named))).tolist()
    is_bias = [name.endswith(".b") for name, _ in named]
    for ours, theirs in (
        (lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
         lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9)),
        (lambda p: Adam(p, lr=0.05, weight_decay=0.1),
         lambda g: torch.optim.Adam(g, lr=0.05)),
        (lambda p: AdamW(p, lr=0.05, weight_decay=0.1),
         lambda g: torch.optim.AdamW(g, lr=0.05)),
    ):
        for (_, p), x in zip(named, init):
            p.data = x
        got = run(ours(model.named_parameters()), [p for _, p in named], grads)
        w_idx = [i for i, b in enumerate(is_bias) if not b]
        b_idx = [i for i, b in enumerate(is_bias) if b]
        tw = torch.tensor([init[i] for i in w_idx], dtype=torch.float64, requires_grad=True)
        tb = torch.tensor([init[i] for i in b_idx], dtype=torch.float64, requires_grad=True)
        opt = theirs([{"params": [tw], "weight_decay": 0.1},
                      {"params": [tb], "weight_decay": 0.0}])
        for g in grads:
            tw.grad = torch.tensor([g[i] for i in w_idx], dtype=torch.float64)
            tb.grad = torch.tensor([g[i] for i in b_idx], dtype=torch.float64)
            opt.step()
        np.testing.assert_allclose([got[i] for i in w_idx], tw.tolist(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose([got[i] for i in b_idx], tb.tolist(), rtol=1e-12, atol=1e-14)


def test_param_groups_match_torch():
    torch = pytest.importorskip("torch")
    a, b = values(INIT[:3]), values(INIT[3:])
    opt = Adam([{"params": a, "lr": 0.1}, {"params": b, "betas": (0.5, 0.6)}], lr=0.01)
    got = run(opt, a + b)
    ta = torch.tensor(INIT[:3], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(INIT[3:], dtype=torch.float64, requires_grad=True)
    topt = torch.optim.Adam([{"params": [ta], "lr": 0.1},
                             {"params": [tb], "betas": (0.5, 0.6)}], lr=0.01)
    for g in GRADS:
        ta.grad = torch.tensor(g[:3], dtype=torch.float64)
        tb.grad = torch.tensor(g[3:], dtype=torch.float64)
        topt.step()
    np.testing.assert_allclose(got, ta.tolist() + tb.tolist(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# update rules by hand (no torch needed)
# ---------------------------------------------------------------------------


def test_sgd_step_by_hand():
    p, q = Value(1.0), Value(-2.0)
    p.grad, q.grad = 0.5, -3.0
    SGD([p, q], lr=0.1).step()
    assert p.data == pytest.approx(1.0 - 0.05, rel=1e-15)
    assert q.data == pytest.approx(-2.0 + 0.3, rel=1e-15)
    # the step reads grads, it does not clear them (zero_grad does)
    assert p.grad == 0.5


def test_sgd_momentum_two_steps_by_hand():
    p = Value(1.0)
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = 1.0
    opt.step()                       # buf = 1        w = 0.9
    assert p.data == pytest.approx(0.9, rel=1e-15)
    opt.step()                       # buf = 0.9 + 1  w = 0.9 - 0.19
    assert p.data == pytest.approx(0.71, rel=1e-15)


def test_sgd_nesterov_and_dampening_by_hand():
    p = Value(0.0)
    opt = SGD([p], lr=1.0, momentum=0.5, nesterov=True)
    p.grad = 1.0
    opt.step()                       # buf = 1;   d = 1 + 0.5*1 = 1.5
    assert p.data == pytest.approx(-1.5)
    opt.step()                       # buf = 1.5; d = 1 + 0.75 = 1.75
    assert p.data == pytest.approx(-3.25)

    q = Value(0.0)
    opt = SGD([q], lr=1.0, momentum=0.5, dampening=0.5)
    q.grad = 1.0
    opt.step()                       # buf = 1 (first step is not dampened)
    assert q.data == pytest.approx(-1.0)
    opt.step()                       # buf = 0.5 + 0.5*1 = 1
    assert q.data == pytest.approx(-2.0)


def test_momentum_is_sgd_with_momentum_0_9():
    a, b = values(), values()
    ra = run(Momentum(a, lr=0.05), a)
    rb = run(SGD(b, lr=0.05, momentum=0.9), b)
    assert ra == rb
    assert Momentum(values(), lr=0.1).param_groups[0]["momentum"] == 0.9


def test_adam_first_step_moves_by_lr_times_sign():
    # with bias correction, m_hat = g and v_hat = g^2 after one step
    ps = values([1.0, 1.0, 1.0])
    grads = [0.5, -3.0, 1e-3]
    for p, g in zip(ps, grads):
        p.grad = g
    Adam(ps, lr=0.01, eps=1e-8).step()
    for p, g in zip(ps, grads):
        assert p.data == pytest.approx(1.0 - 0.01 * g / (abs(g) + 1e-8), rel=1e-12)


def test_adam_second_step_by_hand():
    p = Value(0.0)
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    opt = Adam([p], lr=lr, betas=(b1, b2), eps=eps)
    w, m, v = 0.0, 0.0, 0.0
    for t, g in enumerate([1.0, -2.0, 0.5], start=1):
        p.grad = g
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w -= lr * (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + eps)
        assert p.data == pytest.approx(w, rel=1e-12)


def test_adamw_decay_is_decoupled_by_hand():
    # zero gradient: Adam's step is 0, only the decoupled decay acts
    p = Value(2.0)
    p.grad = 0.0
    AdamW([p], lr=0.1, weight_decay=0.5).step()
    assert p.data == pytest.approx(2.0 * (1 - 0.1 * 0.5), rel=1e-15)
    # Adam's L2 form instead feeds the decay through the normalised step
    q = Value(2.0)
    q.grad = 0.0
    Adam([q], lr=0.1, weight_decay=0.5).step()
    assert q.data == pytest.approx(2.0 - 0.1 * 1.0 / (1.0 + 1e-8 / 1.0), rel=1e-12)


def test_gradients_from_backward_drive_the_step():
    w, b = Value(2.0), Value(0.5)
    loss = (w * 3.0 + b - 1.0) ** 2     # d/dw = 2*5.5*3 = 33, d/db = 11
    opt = SGD([w, b], lr=0.01)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert w.data == pytest.approx(2.0 - 0.33)
    assert b.data == pytest.approx(0.5 - 0.11)


# ---------------------------------------------------------------------------
# weight decay: which parameters it touches
# ---------------------------------------------------------------------------


def _model_with_nonzero_biases():
    fastgrad.manual_seed(11)
    model = MLP(2, [3, 1])
    for layer in model.layers:
        for n in layer.neurons:
            n.b.data = 0.5
    return model


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, weight_decay=0.2),
    lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.2),
    lambda p: Adam(p, lr=0.1, weight_decay=0.2),
    lambda p: AdamW(p, lr=0.1, weight_decay=0.2),
])
def test_named_parameters_spare_biases_from_weight_decay(make):
    model = _model_with_nonzero_biases()
    before = dict((n, p.data) for n, p in model.named_parameters())
    model.zero_grad()
    make(model.named_parameters()).step()      # zero grads: only decay can move
    for name, p in model.named_parameters():
        if name.endswith(".b"):
            assert p.data == before[name], name
        else:
            # moved towards zero (Adam's normalised step may overshoot it)
            assert (p.data - before[name]) * before[name] < 0, name


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, weight_decay=0.2),
    lambda p: Adam(p, lr=0.1, weight_decay=0.2),
    lambda p: AdamW(p, lr=0.1, weight_decay=0.2),
])
def test_bare_parameters_decay_everything_like_pytorch(make):
    model = _model_with_nonzero_biases()
    before = [p.data for p in model.parameters()]
    model.zero_grad()
    make(model.parameters()).step()
    for p, x in zip(model.parameters(), before):
        assert (p.data - x) * x < 0          # moved towards zero


def test_sgd_decay_amount_is_l2_form():
    model = _model_with_nonzero_biases()
    named = list(model.named_parameters())
    before = {n: p.data for n, p in named}
    model.zero_grad()
    SGD(named, lr=0.1, weight_decay=0.2).step()
    for n, p in named:
        expected = before[n] if n.endswith(".b") else before[n] - 0.1 * 0.2 * before[n]
        assert p.data == pytest.approx(expected, rel=1e-15), n


def test_custom_decay_filter_is_honoured():
    model = _model_with_nonzero_biases()
    named = list(model.named_parameters())
    before = {n: p.data for n, p in named}
    seen = []

    def only_first_inputs_and_biases(name):
        seen.append(name)
        return name.endswith(".w.0") or name.endswith(".b")

    model.zero_grad()
    SGD(model.named_parameters(), lr=0.1, weight_decay=0.2,
        decay_filter=only_first_inputs_and_biases).step()
    assert sorted(seen) == sorted(before)      # asked about every parameter
    for n, p in named:
        if only_first_inputs_and_biases(n):
            assert p.data == pytest.approx(before[n] * (1 - 0.02), rel=1e-15), n
        else:
            assert p.data == before[n], n


def test_decay_filter_must_be_callable():
    with pytest.raises(TypeError):
        SGD(values(), lr=0.1, weight_decay=0.1, decay_filter="biases")


# ---------------------------------------------------------------------------
# param groups
# ---------------------------------------------------------------------------


def test_param_groups_with_per_group_lr():
    a, b = values([1.0, 1.0]), values([1.0])
    opt = SGD([{"params": a, "lr": 0.5}, {"params": b}], lr=0.1)
    for p in a + b:
        p.grad = 1.0
    opt.step()
    assert [p.data for p in a] == [0.5, 0.5]
    assert b[0].data == pytest.approx(0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]


def test_param_groups_inherit_defaults_and_accept_named_pairs():
    model = _model_with_nonzero_biases()
    named = list(model.named_parameters())
    weights = [(n, p) for n, p in named if not n.endswith(".b")]
    biases = [(n, p) for n, p in named if n.endswith(".b")]
    opt = SGD([{"params": weights, "weight_decay": 0.5}, {"params": biases, "lr": 0.0}],
              lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["momentum"] == 0.9
    assert opt.param_groups[1]["momentum"] == 0.9
    before = {n: p.data for n, p in named}
    model.zero_grad()
    opt.step()
    for n, p in weights:
        assert p.data == pytest.approx(before[n] * (1 - 0.05), rel=1e-15)
    for n, p in biases:
        assert p.data == before[n]


def test_add_param_group():
    a, b = values([1.0]), values([1.0])
    opt = SGD(a, lr=0.1)
    opt.add_param_group({"params": b, "lr": 1.0})
    a[0].grad = b[0].grad = 1.0
    opt.step()
    assert a[0].data == pytest.approx(0.9)
    assert b[0].data == pytest.approx(0.0)
    with pytest.raises(ValueError):
        opt.add_param_group({"params": a})        # already present


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _msg_has(info, text):
    assert text in str(info.value), f"{text!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("make,quoted", [
    (lambda p: SGD(p, lr=-0.1), "-0.1"),
    (lambda p: SGD(p, lr=float("nan")), "nan"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "-0.5"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-0.01), "-0.01"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=-0.2), "-0.2"),
    (lambda p: Momentum(p, lr=-3.0), "-3.0"),
    (lambda p: Adam(p, lr=-0.001), "-0.001"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), "1.0"),
    (lambda p: Adam(p, betas=(0.9, 1.5)), "1.5"),
    (lambda p: Adam(p, betas=(-0.1, 0.999)), "-0.1"),
    (lambda p: Adam(p, betas=(0.9, -0.25)), "-0.25"),
    (lambda p: Adam(p, eps=-1e-8), "-1e-08"),
    (lambda p: Adam(p, weight_decay=-0.5), "-0.5"),
    (lambda p: AdamW(p, lr=-1.0), "-1.0"),
    (lambda p: AdamW(p, betas=(0.9, 1.0)), "1.0"),
    (lambda p: AdamW(p, eps=-0.5), "-0.5"),
    (lambda p: AdamW(p, weight_decay=-0.125), "-0.125"),
])
def test_bad_hyperparameter_is_value_error_quoting_it(make, quoted):
    with pytest.raises(ValueError) as info:
        make(values())
    _msg_has(info, quoted)


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError) as info:
        SGD(values(), lr=0.1, nesterov=True)
    _msg_has(info, "momentum")
    with pytest.raises(ValueError):
        SGD(values(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_unknown_group_key_is_value_error_naming_it():
    with pytest.raises(ValueError) as info:
        SGD([{"params": values(), "betas": (0.9, 0.99)}], lr=0.1)
    _msg_has(info, "betas")
    with pytest.raises(ValueError) as info:
        Adam([{"params": values(), "momentum": 0.9}])
    _msg_has(info, "momentum")


def test_bad_hyperparameter_in_a_group_is_value_error():
    with pytest.raises(ValueError) as info:
        SGD([{"params": values(), "lr": -5.0}], lr=0.1)
    _msg_has(info, "-5.0")


@pytest.mark.parametrize("make,quoted", [
    (lambda p: SGD(p, lr="0.1"), "'0.1'"),
    (lambda p: SGD(p, lr=None), "None"),
    (lambda p: SGD(p, lr=True), "True"),
    (lambda p: SGD(p, lr=0.1, momentum="high"), "'high'"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov="yes"), "'yes'"),
    (lambda p: Adam(p, lr=[0.1]), "[0.1]"),
    (lambda p: Adam(p, betas=("a", 0.9)), "'a'"),
    (lambda p: Adam(p, eps=None), "None"),
    (lambda p: AdamW(p, weight_decay="0.01"), "'0.01'"),
])
def test_non_number_hyperparameter_is_type_error(make, quoted):
    with pytest.raises(TypeError) as info:
        make(values())
    _msg_has(info, quoted)


@pytest.mark.parametrize("cls", [SGD, Momentum, Adam, AdamW])
def test_empty_params_is_value_error(cls):
    with pytest.raises(ValueError):
        cls([], lr=0.1)
    with pytest.raises(ValueError):
        cls(iter([]), lr=0.1)
    with pytest.raises(ValueError):
        cls(MLP(2, [1]).parameters()[:0], lr=0.1)
    with pytest.raises(ValueError):
        cls([{"params": []}], lr=0.1)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_duplicate_params_is_value_error(cls):
    p, q = Value(1.0), Value(2.0)
    with pytest.raises(ValueError):
        cls([p, q, p], lr=0.1)
    with pytest.raises(ValueError):
        cls([{"params": [p]}, {"params": [q, p]}], lr=0.1)
    with pytest.raises(ValueError) as info:
        cls([("w", p), ("v", q), ("w2", p)], lr=0.1)
    _msg_has(info, "w2")


def test_params_must_be_values():
    with pytest.raises(TypeError):
        SGD([1.0, 2.0], lr=0.1)
    with pytest.raises(TypeError):
        SGD(Value(1.0), lr=0.1)


# ---------------------------------------------------------------------------
# zero_grad
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SGD, Momentum, Adam, AdamW])
def test_zero_grad_zeroes_every_managed_grad(cls):
    a, b = values(INIT[:4]), values(INIT[4:])
    other = Value(1.0)
    other.grad = 7.0
    opt = cls([{"params": a}, {"params": b}], lr=0.1)
    for p, g in zip(a + b, GRADS[0]):
        p.grad = g
    opt.zero_grad()
    assert [p.grad for p in a + b] == [0.0] * N
    assert other.grad == 7.0       # not one of its parameters


# ---------------------------------------------------------------------------
# state dicts
# ---------------------------------------------------------------------------

RESUMABLE = [
    ("sgd", lambda p: SGD(p, lr=0.1)),
    ("sgd_momentum", lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("sgd_nesterov", lambda p: SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    ("momentum", lambda p: Momentum(p, lr=0.05, dampening=0.1)),
    ("adam", lambda p: Adam(p, lr=0.01, weight_decay=0.01)),
    ("adamw", lambda p: AdamW(p, lr=0.02, betas=(0.85, 0.995))),
]


@pytest.mark.parametrize("name,make", RESUMABLE, ids=[r[0] for r in RESUMABLE])
def test_state_dict_is_json_serialisable(name, make):
    params = values()
    opt = make(params)
    json.dumps(opt.state_dict())                 # before any step
    run(opt, params, GRADS[:3])
    text = json.dumps(opt.state_dict())
    assert json.loads(text) == json.loads(json.dumps(json.loads(text)))


@pytest.mark.parametrize("name,make", RESUMABLE, ids=[r[0] for r in RESUMABLE])
def test_resume_from_state_dict_is_bit_identical(name, make):
    # uninterrupted: 10 steps
    a = values()
    expected = run(make(a), a)
    # interrupted after 4 steps; state goes through JSON text
    b = values()
    opt_b = make(b)
    run(opt_b, b, GRADS[:4])
    saved = json.dumps(opt_b.state_dict())
    params_saved = [p.data for p in b]
    del opt_b
    # a fresh optimizer over fresh Values with the saved data
    c = values(params_saved)
    opt_c = make(c)
    opt_c.load_state_dict(json.loads(saved))
    got = run(opt_c, c, GRADS[4:])
    assert got == expected                       # exact float equality


@pytest.mark.parametrize("name,make", RESUMABLE, ids=[r[0] for r in RESUMABLE])
def test_resume_with_named_parameters_is_bit_identical(name, make):
    def fresh():
        fastgrad.manual_seed(3)
        return MLP(2, [3, 2])

    grads = np.random.default_rng(9).normal(0, 1, (6, 17)).tolist()
    m1 = fresh()
    expected = run(make(m1.named_parameters()), m1.parameters(), grads)
    m2 = fresh()
    opt2 = make(m2.named_parameters())
    run(opt2, m2.parameters(), grads[:2])
    saved = json.loads(json.dumps(opt2.state_dict()))
    mstate = json.loads(json.dumps(m2.state_dict()))
    m3 = fresh()
    m3.load_state_dict(mstate)
    opt3 = make(m3.named_parameters())
    opt3.load_state_dict(saved)
    assert run(opt3, m3.parameters(), grads[2:]) == expected


def test_load_state_dict_restores_hyperparameters():
    a = values()
    opt_a = Adam(a, lr=0.01, betas=(0.8, 0.9))
    run(opt_a, a, GRADS[:2])
    b = values([p.data for p in a])
    opt_b = Adam(b, lr=0.5)                      # different lr and betas
    opt_b.load_state_dict(json.loads(json.dumps(opt_a.state_dict())))
    assert opt_b.param_groups[0]["lr"] == 0.01
    assert tuple(opt_b.param_groups[0]["betas"]) == (0.8, 0.9)
    assert run(opt_b, b, GRADS[2:]) == run(opt_a, a, GRADS[2:])


def test_state_dict_is_a_snapshot():
    params = values()
    opt = Adam(params, lr=0.01)
    run(opt, params, GRADS[:2])
    sd = opt.state_dict()
    frozen = json.dumps(sd, sort_keys=True)
    run(opt, params, GRADS[2:4])
    assert json.dumps(sd, sort_keys=True) == frozen
    # and loading does not keep references into the caller's dict
    other = values([p.data for p in params])
    opt2 = Adam(other, lr=0.01)
    loaded = json.loads(frozen)
    opt2.load_state_dict(loaded)
    before = snapshot(opt2)
    loaded["state"][0]["exp_avg"][0] = 123.0
    loaded["param_groups"][0]["lr"] = 9.0
    assert snapshot(opt2) == before


def _stepped_adam():
    params = values()
    opt = Adam(params, lr=0.01)
    run(opt, params, GRADS[:3])
    return params, opt


def _bad_states():
    params, opt = _stepped_adam()
    good = opt.state_dict()
    bads = {}
    s = copy.deepcopy(good)
    s["type"] = "SGD"
    bads["wrong type name"] = s
    s = copy.deepcopy(good)
    s["state"][0]["exp_avg"] = s["state"][0]["exp_avg"][:-1]
    bads["short buffer"] = s
    s = copy.deepcopy(good)
    s["state"][0]["exp_avg_sq"] = s["state"][0]["exp_avg_sq"] + [0.0]
    bads["long buffer"] = s
    s = copy.deepcopy(good)
    s["param_groups"][0]["num_params"] = N + 1
    bads["wrong num_params"] = s
    s = copy.deepcopy(good)
    s["param_groups"][0]["lr"] = -1.0
    bads["negative lr"] = s
    s = copy.deepcopy(good)
    s["param_groups"][0]["betas"] = [0.9, 1.5]
    bads["beta out of range"] = s
    s = copy.deepcopy(good)
    s["param_groups"][0]["eps"] = "tiny"
    bads["non-number eps"] = s
    s = copy.deepcopy(good)
    s["param_groups"][0]["momentum"] = 0.9
    bads["unknown hyperparameter"] = s
    s = copy.deepcopy(good)
    del s["param_groups"][0]["lr"]
    bads["missing hyperparameter"] = s
    s = copy.deepcopy(good)
    s["state"][0]["step"] = -2
    bads["negative step"] = s
    s = copy.deepcopy(good)
    s["state"][0]["exp_avg"][1] = "x"
    bads["non-number in buffer"] = s
    s = copy.deepcopy(good)
    s["param_groups"].append(copy.deepcopy(s["param_groups"][0]))
    s["state"].append(copy.deepcopy(s["state"][0]))
    bads["extra group"] = s
    return bads


@pytest.mark.parametrize("problem", list(_bad_states()))
def test_bad_state_raises_and_leaves_optimizer_unchanged(problem):
    bad = _bad_states()[problem]
    # the target: a *different* Adam state, so a partial load would show
    params = values()
    opt = Adam(params, lr=0.02, betas=(0.8, 0.95))
    run(opt, params, GRADS[5:9])
    before = snapshot(opt)
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)
    assert snapshot(opt) == before
    # and it keeps stepping exactly like an untouched twin
    twin_params = values()
    twin = Adam(twin_params, lr=0.02, betas=(0.8, 0.95))
    run(twin, twin_params, GRADS[5:9])
    assert run(opt, params, GRADS[:2]) == run(twin, twin_params, GRADS[:2])


def test_bad_second_group_leaves_first_group_unchanged():
    a, b = values(INIT[:3]), values(INIT[3:])
    src = SGD([{"params": a}, {"params": b}], lr=0.3, momentum=0.5)
    run(src, a + b, GRADS[:3])
    bad = src.state_dict()
    bad["param_groups"][1]["momentum"] = -1.0      # group 0 is fine and differs
    c, d = values(INIT[:3]), values(INIT[3:])
    dst = SGD([{"params": c}, {"params": d}], lr=0.1, momentum=0.9)
    run(dst, c + d, GRADS[5:6])
    before = snapshot(dst)
    with pytest.raises(ValueError) as info:
        dst.load_state_dict(bad)
    _msg_has(info, "-1.0")
    assert snapshot(dst) == before


def test_wrong_type_name_message_names_both_types():
    _, opt = _stepped_adam()
    sgd = SGD(values(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError) as info:
        sgd.load_state_dict(opt.state_dict())
    _msg_has(info, "Adam")
    _msg_has(info, "SGD")


def test_state_for_differently_named_parameters_is_rejected():
    fastgrad.manual_seed(1)
    model = MLP(2, [3, 1])
    opt = SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    model.zero_grad()
    opt.step()
    bad = copy.deepcopy(opt.state_dict())
    bad["param_groups"][0]["names"][4] = "encoder.weight"
    before = snapshot(opt)
    with pytest.raises(ValueError) as info:
        opt.load_state_dict(bad)
    _msg_has(info, "encoder.weight")
    assert snapshot(opt) == before


def test_state_dict_does_not_alias_the_optimizer_s_parameter_names():
    fastgrad.manual_seed(1)
    model = MLP(2, [3, 1])
    opt = SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    before = snapshot(opt)
    sd = opt.state_dict()
    sd["param_groups"][0]["names"][0] = "edited by the caller"
    assert snapshot(opt) == before


def test_changing_lr_in_param_groups_takes_effect():
    # what learning-rate schedules do (as in PyTorch)
    p = Value(1.0)
    opt = SGD([p], lr=0.1)
    p.grad = 1.0
    opt.step()
    opt.param_groups[0]["lr"] = 0.01
    opt.step()
    assert p.data == pytest.approx(1.0 - 0.1 - 0.01)


def test_a_bad_hyperparameter_set_after_construction_fails_step_cleanly():
    a = Value(1.0)
    opt = Adam([a], lr=0.1)
    opt.param_groups[0]["lr"] = "0.05"
    a.grad = 1.0
    with pytest.raises(TypeError, match=r"learning rate must be a real number, got str: '0.05'"):
        opt.step()
    assert a.data == 1.0 and opt.state[0]["step"] == 0       # nothing changed
    opt.param_groups[0]["lr"] = 0.1
    opt.step()
    # the first Adam step moves a parameter by lr (bias correction at step 1)
    assert a.data == pytest.approx(1.0 - 0.1, rel=1e-7)     # eps = 1e-8 aside
    opt.param_groups[0]["betas"] = (0.9, 1.5)
    with pytest.raises(ValueError, match=r"beta parameter at index 1: 1.5"):
        opt.step()
    assert opt.state[0]["step"] == 1


def test_replacing_a_groups_params_is_honoured_and_in_place_edits_are_refused():
    a, b = Value(1.0), Value(1.0)
    opt = SGD([a], lr=0.5)
    assert isinstance(opt.param_groups[0]["params"], tuple)
    with pytest.raises(TypeError):
        opt.param_groups[0]["params"][0] = b               # a tuple: no silent edit
    opt.param_groups[0]["params"] = [b]
    a.grad = b.grad = 1.0
    opt.step()
    assert (a.data, b.data) == (1.0, 0.5)
    opt.zero_grad()
    assert b.grad == 0.0 and a.grad == 1.0
    opt.param_groups[0]["params"] = [a, b]
    with pytest.raises(RuntimeError, match="now has 2 parameters instead of 1"):
        opt.step()
    opt.param_groups[0]["params"] = ["b"]
    with pytest.raises(TypeError, match="parameter 0 must be a fastgrad Value, got str"):
        opt.step()


def test_a_bad_hyperparameter_in_any_group_stops_every_group():
    a, b = Value(1.0), Value(1.0)
    opt = Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
    opt.param_groups[1]["lr"] = -1
    a.grad = b.grad = 1.0
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        opt.step()
    assert (a.data, b.data) == (1.0, 1.0)
    assert [s["step"] for s in opt.state] == [0, 0]
