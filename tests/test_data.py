"""DataLoader and the built-in datasets (fastgrad.data)."""

import math

import numpy as np
import pytest

import fastgrad
from fastgrad import Value
from fastgrad.data import DataLoader, make_moons, make_spiral


def arrays(n=10, d=3):
    """(X, Y) columns where row i of X is [i, i+0.5, ...] and Y[i] = i, so samples are traceable."""
    X = np.arange(n, dtype=np.float64)[:, None] + 0.5 * np.arange(d)[None, :]
    Y = np.arange(n, dtype=np.int64)
    return X, Y


def pairs(n=10):
    return [([float(i), -float(i)], i) for i in range(n)]


class MapDataset:
    """A torch-style map dataset: only __len__ and __getitem__."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return [float(i), 2.0 * i], i % 3


def labels(loader):
    """All y's of one epoch, in order, as Python ints."""
    return [int(y) for _, y_batch in loader for y in y_batch]


# --- batch counts ------------------------------------------------------------

@pytest.mark.parametrize("n, bs, drop_last, expected", [
    (10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (9, 3, True, 3),
    (10, 1, False, 10), (10, 32, False, 1), (10, 32, True, 0), (0, 4, False, 0),
])
def test_len_is_number_of_batches(n, bs, drop_last, expected):
    for dataset in (arrays(n), pairs(n), MapDataset(n)):
        loader = DataLoader(dataset, batch_size=bs, drop_last=drop_last)
        assert len(loader) == expected
        assert len(list(loader)) == expected


def test_batch_sizes_with_and_without_drop_last():
    X, Y = arrays(10)
    assert [len(xb) for xb, _ in DataLoader((X, Y), batch_size=4)] == [4, 4, 2]
    assert [len(xb) for xb, _ in DataLoader((X, Y), batch_size=4, drop_last=True)] == [4, 4]
    assert [len(yb) for _, yb in DataLoader(pairs(10), batch_size=4, shuffle=True, drop_last=True)] == [4, 4]


def test_empty_dataset_yields_nothing():
    for dataset in ([], (np.zeros((0, 2)), np.zeros(0, dtype=np.int64)), MapDataset(0)):
        loader = DataLoader(dataset, batch_size=4, shuffle=True, seed=0)
        assert len(loader) == 0
        assert list(loader) == []


# --- the three dataset kinds --------------------------------------------------

def test_array_columns_yield_numpy_rows_in_order():
    X, Y = arrays(7)
    batches = list(DataLoader((X, Y), batch_size=3))
    assert [type(xb) for xb, _ in batches] == [np.ndarray] * 3
    assert [type(yb) for _, yb in batches] == [np.ndarray] * 3
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), X)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in batches]), Y)
    assert batches[0][0].shape == (3, 3)


def test_list_columns_yield_lists():
    xs = [[float(i), 1.0] for i in range(5)]
    ys = [i % 2 for i in range(5)]
    batches = list(DataLoader((xs, ys), batch_size=2))
    assert batches == [([[0.0, 1.0], [1.0, 1.0]], [0, 1]), ([[2.0, 1.0], [3.0, 1.0]], [0, 1]),
                       ([[4.0, 1.0]], [0])]


def test_mixed_array_and_list_columns():
    X, _ = arrays(4)
    batches = list(DataLoader((X, ["a", "b", "c", "d"]), batch_size=3))
    np.testing.assert_array_equal(batches[0][0], X[:3])
    assert batches[1][1] == ["d"]


def test_sequence_of_pairs_yields_lists():
    data = pairs(5)
    batches = list(DataLoader(data, batch_size=2))
    assert batches[0] == ([[0.0, -0.0], [1.0, -1.0]], [0, 1])
    assert batches[2] == ([[4.0, -4.0]], [4])
    # a list of two pairs is two samples
    two = [(np.array([1.0, 2.0]), 0), (np.array([3.0, 4.0]), 1)]
    (xb, yb), = DataLoader(two, batch_size=2)
    assert yb == [0, 1]
    np.testing.assert_array_equal(xb[1], [3.0, 4.0])
    # a tuple of two 2-tuples could be samples or columns: refused, not guessed
    with pytest.raises(ValueError, match="ambiguous"):
        DataLoader(tuple(two), batch_size=2)


def test_columns_as_tuples_from_zip():
    """X, Y = zip(*pairs) gives tuple columns; they are columns at every size."""
    data = [([float(i), -float(i)], i % 3) for i in range(5)]
    X, Y = zip(*data)
    batches = list(DataLoader((X, Y), batch_size=2))
    assert batches[0] == ([[0.0, -0.0], [1.0, -1.0]], [0, 1])
    assert [y for _, ys in batches for y in ys] == [0, 1, 2, 0, 1]
    X3, Y3 = zip(*data[:3])
    assert len(DataLoader((X3, Y3), batch_size=1)) == 3


def test_getitem_dataset():
    batches = list(DataLoader(MapDataset(5), batch_size=2))
    assert batches[1] == ([[2.0, 4.0], [3.0, 6.0]], [2, 0])
    assert labels(DataLoader(MapDataset(7), batch_size=3)) == [i % 3 for i in range(7)]


def test_tuple_of_two_lists_is_read_as_columns():
    # The documented rule for the one ambiguous spelling.
    (xb, yb), = DataLoader(([[1.0, 2.0], [3.0, 4.0]], [0, 1]), batch_size=2)
    assert xb == [[1.0, 2.0], [3.0, 4.0]] and yb == [0, 1]


# --- shuffling ------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: arrays(23), lambda: pairs(23), lambda: MapDataset(23)])
def test_every_sample_exactly_once_per_epoch(make):
    loader = DataLoader(make(), batch_size=5, shuffle=True, seed=3)
    for _ in range(3):
        got = labels(loader)
        if isinstance(loader.dataset, MapDataset):
            assert sorted(got) == sorted(i % 3 for i in range(23))
        else:
            assert sorted(got) == list(range(23))


def test_shuffled_rows_stay_with_their_labels():
    X, Y = arrays(50)
    for xb, yb in DataLoader((X, Y), batch_size=8, shuffle=True, seed=1):
        np.testing.assert_array_equal(xb[:, 0], yb)  # row i starts with i
    for xb, yb in DataLoader(pairs(50), batch_size=8, shuffle=True, seed=1):
        assert [x[0] for x in xb] == [float(y) for y in yb]


def test_shuffle_actually_shuffles_and_reshuffles_each_epoch():
    loader = DataLoader(arrays(100), batch_size=10, shuffle=True, seed=0)
    epochs = [labels(loader) for _ in range(3)]
    assert epochs[0] != list(range(100))
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


def test_no_shuffle_keeps_order_every_epoch():
    loader = DataLoader(pairs(10), batch_size=3)
    assert labels(loader) == labels(loader) == list(range(10))


def test_drop_last_drops_different_samples_when_shuffled():
    loader = DataLoader(arrays(10), batch_size=4, shuffle=True, drop_last=True, seed=0)
    seen = [set(labels(loader)) for _ in range(20)]
    assert all(len(s) == 8 for s in seen)
    assert set.union(*seen) == set(range(10))


def test_seed_reproduces_the_sequence_of_epochs():
    a = DataLoader(arrays(40), batch_size=7, shuffle=True, seed=123)
    b = DataLoader(arrays(40), batch_size=7, shuffle=True, seed=123)
    c = DataLoader(arrays(40), batch_size=7, shuffle=True, seed=124)
    ea = [labels(a) for _ in range(3)]
    assert ea == [labels(b) for _ in range(3)]
    assert ea != [labels(c) for _ in range(3)]


def test_seeded_loader_ignores_the_global_generator():
    loader = DataLoader(arrays(30), batch_size=4, shuffle=True, seed=5)
    fastgrad.manual_seed(0)
    first = labels(loader)
    fresh = DataLoader(arrays(30), batch_size=4, shuffle=True, seed=5)
    fastgrad.manual_seed(99)
    assert labels(fresh) == first


def test_manual_seed_reproduces_unseeded_shuffling():
    loader = DataLoader(pairs(30), batch_size=4, shuffle=True)
    fastgrad.manual_seed(7)
    run1 = [labels(loader) for _ in range(2)]
    fastgrad.manual_seed(7)
    run2 = [labels(loader) for _ in range(2)]
    fastgrad.manual_seed(8)
    run3 = [labels(loader) for _ in range(2)]
    assert run1 == run2
    assert run1 != run3
    assert run1[0] != run1[1]


def test_order_is_fixed_when_the_epoch_starts():
    loader = DataLoader(arrays(30), batch_size=4, shuffle=True)
    fastgrad.manual_seed(1)
    expected = labels(loader)
    fastgrad.manual_seed(1)
    it = iter(loader)
    fastgrad.manual_seed(2)  # too late: this epoch's order is already drawn
    assert [int(y) for _, yb in it for y in yb] == expected


# --- the seed's mini-batch loop ----------------------------------------------------

def test_seed_minibatch_loop_trains():
    """The SEED's loop shape, with a hand-written linear softmax model and loss."""
    X, y = make_moons(64, noise=0.05, seed=0)
    fastgrad.manual_seed(0)
    W = [[Value(float(w)) for w in row] for row in fastgrad.default_generator().normal(size=(2, 2))]
    b = [Value(0.0), Value(0.0)]
    params = [w for row in W for w in row] + b

    def model(xv):
        return [fastgrad.dot(W[k], xv) + b[k] for k in range(2)]

    def softmax(logits):
        m = max(v.data for v in logits)
        exps = [(v - m).exp() for v in logits]
        total = fastgrad.sum(exps)
        return [e / total for e in exps]

    def cross_entropy(probs, target):
        return -probs[target].log()

    def mean_loss():
        with fastgrad.no_grad():
            return sum(cross_entropy(softmax(model([Value(v) for v in xv])), t).data
                       for xv, t in zip(X, y)) / len(y)

    before = mean_loss()
    dataset = (X, y)
    n_batches = 0
    for _ in range(20):
        for x_batch, y_batch in DataLoader(dataset, batch_size=32, shuffle=True):
            batch_loss = Value(0.0)
            for x_vals, y_i in zip(x_batch, y_batch):
                xv = [Value(v) for v in x_vals]
                logits = model(xv)
                probs = softmax(logits if isinstance(logits, list) else [logits])
                batch_loss = batch_loss + cross_entropy(probs, y_i)
            batch_loss = batch_loss / len(x_batch)
            for p in params:
                p.grad = 0.0
            batch_loss.backward()
            for p in params:
                p.data -= 0.5 * p.grad
            n_batches += 1
    assert n_batches == 40
    assert mean_loss() < 0.6 * before


def test_seed_loop_accepts_pair_datasets():
    data = [([0.5, -1.0], 1), ([2.0, 0.0], 0), ([1.0, 1.0], 1)]
    seen = []
    for x_batch, y_batch in DataLoader(data, batch_size=2, shuffle=True, seed=0):
        assert len(x_batch) == len(y_batch)
        for x_vals, y in zip(x_batch, y_batch):
            xv = [Value(v) for v in x_vals]
            seen.append(([v.data for v in xv], [0.0, 1.0][y]))
    assert sorted(seen) == sorted((x, float(y)) for x, y in data)


# --- bad arguments -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, text", [
    ({"batch_size": 0}, ValueError, "0"),
    ({"batch_size": -3}, ValueError, "-3"),
    ({"batch_size": 2.0}, TypeError, "2.0"),
    ({"batch_size": True}, TypeError, "True"),
    ({"batch_size": "8"}, TypeError, "'8'"),
    ({"shuffle": 1}, TypeError, "1"),
    ({"shuffle": "yes"}, TypeError, "'yes'"),
    ({"drop_last": None}, TypeError, "None"),
    ({"seed": -1}, ValueError, "-1"),
    ({"seed": 1.5}, ValueError, "1.5"),
    ({"seed": True}, ValueError, "True"),
])
def test_bad_arguments_are_refused_quoting_the_value(kwargs, exc, text):
    name = next(iter(kwargs))
    with pytest.raises(exc, match=name) as info:
        DataLoader(arrays(5), **kwargs)
    assert text in str(info.value)


def test_numpy_integer_batch_size_and_seed_are_accepted():
    loader = DataLoader(arrays(10), batch_size=np.int64(4), seed=np.int32(2), shuffle=True)
    assert len(loader) == 3 and loader.batch_size == 4


def test_columns_of_different_lengths_name_both_lengths():
    with pytest.raises(ValueError, match=r"len\(X\)=5.*len\(Y\)=4"):
        DataLoader((np.zeros((5, 2)), np.zeros(4)))
    with pytest.raises(ValueError, match=r"len\(X\)=3.*len\(Y\)=2"):
        DataLoader(([1, 2, 3], [0, 1]))


@pytest.mark.parametrize("dataset, type_name", [
    (42, "int"), (None, "NoneType"), ((i for i in range(3)), "generator"), ({1, 2}, "set"),
    ("abc", "str"), ({"x": [1], "y": [0]}, "dict"), (np.zeros((4, 2)), "ndarray"),
])
def test_unsupported_dataset_kinds_name_their_type(dataset, type_name):
    with pytest.raises(TypeError, match=type_name):
        DataLoader(dataset)


def test_sample_that_is_not_a_pair_is_reported_with_its_index():
    with pytest.raises(TypeError, match=r"dataset\[2\].*\(x, y\) pair"):
        DataLoader([([1.0], 0), ([2.0], 1), 3.0])

    class Bad(MapDataset):
        def __getitem__(self, i):
            return (1.0, 2.0, 3.0) if i == 1 else super().__getitem__(i)

    loader = DataLoader(Bad(3))  # a custom dataset is only read while iterating
    with pytest.raises(TypeError, match=r"dataset\[1\]"):
        list(loader)


# --- built-in datasets -----------------------------------------------------------------------

@pytest.mark.parametrize("n, n0, n1", [(100, 50, 50), (101, 50, 51), (1, 0, 1), (2, 1, 1)])
def test_make_moons_shapes_labels_balance(n, n0, n1):
    X, y = make_moons(n, seed=0)
    assert X.shape == (n, 2) and X.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.sum(y == 0) == n0 and np.sum(y == 1) == n1


def test_make_moons_geometry_without_noise():
    X, y = make_moons(200, noise=0.0, seed=0)
    outer, inner = X[y == 0], X[y == 1]
    # outer: the upper unit half-circle; inner: unit half-circle centred at (1, 0.5), lower half
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0)
    assert np.all(outer[:, 1] >= -1e-12)
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1.0, inner[:, 1] - 0.5), 1.0)
    assert np.all(inner[:, 1] <= 0.5 + 1e-12)
    # the end points of both arcs are included, as in scikit-learn
    assert np.isclose(outer[:, 0].max(), 1.0) and np.isclose(outer[:, 0].min(), -1.0)
    assert np.isclose(inner[:, 0].max(), 2.0) and np.isclose(inner[:, 0].min(), 0.0)


def test_make_moons_noise_and_shuffle():
    X0, y0 = make_moons(400, noise=0.0, seed=1)
    X1, y1 = make_moons(400, noise=0.1, seed=1)
    outer = X1[y1 == 0]
    residual = np.hypot(outer[:, 0], outer[:, 1]) - 1.0
    assert 0.05 < residual.std() < 0.2
    assert not np.array_equal(y0[:200], np.zeros(200))  # shuffled: first half is mixed
    _, y_plain = make_moons(10, noise=0.0, seed=1, shuffle=False)
    assert y_plain.tolist() == [0] * 5 + [1] * 5


def test_make_moons_reproducibility():
    a = make_moons(50, seed=4)
    b = make_moons(50, seed=4)
    c = make_moons(50, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    fastgrad.manual_seed(3)
    d = make_moons(50)
    fastgrad.manual_seed(3)
    e = make_moons(50)
    np.testing.assert_array_equal(d[0], e[0])
    assert not np.array_equal(d[0], make_moons(50)[0])


@pytest.mark.parametrize("n_per_class, n_classes", [(100, 3), (7, 2), (1, 5)])
def test_make_spiral_shapes_labels_balance(n_per_class, n_classes):
    X, y = make_spiral(n_per_class, n_classes, seed=0)
    assert X.shape == (n_per_class * n_classes, 2) and X.dtype == np.float64
    assert y.dtype == np.int64
    assert np.bincount(y, minlength=n_classes).tolist() == [n_per_class] * n_classes


def test_make_spiral_geometry_without_noise():
    X, y = make_spiral(50, 3, noise=0.0, seed=0, shuffle=False)
    r = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(r, np.tile(np.linspace(0, 1, 50), 3))
    assert y.tolist() == [0] * 50 + [1] * 50 + [2] * 50
    t = np.linspace(0, 4, 50)
    # arm k at angle 4k + t (measured from the y axis, as CS231n writes it)
    np.testing.assert_allclose(X[50:100], np.column_stack([r[50:100] * np.sin(4 + t),
                                                           r[50:100] * np.cos(4 + t)]))
    assert np.all(r <= 1.0 + 1e-12)  # angular noise never changes the radius
    Xn, _ = make_spiral(50, 3, noise=0.5, seed=0, shuffle=False)
    np.testing.assert_allclose(np.hypot(Xn[:, 0], Xn[:, 1]), r, atol=1e-12)
    assert not np.allclose(Xn, X)


def test_make_spiral_reproducibility():
    np.testing.assert_array_equal(make_spiral(seed=9)[0], make_spiral(seed=9)[0])
    assert not np.array_equal(make_spiral(seed=9)[0], make_spiral(seed=10)[0])
    fastgrad.manual_seed(11)
    a = make_spiral()
    fastgrad.manual_seed(11)
    b = make_spiral()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("call, exc, text", [
    (lambda: make_moons(0), ValueError, "n must be an int >= 1, got 0"),
    (lambda: make_moons(10.0), TypeError, "10.0"),
    (lambda: make_moons(True), TypeError, "True"),
    (lambda: make_moons(10, noise=-0.1), ValueError, "-0.1"),
    (lambda: make_moons(10, noise=math.inf), ValueError, "inf"),
    (lambda: make_moons(10, noise=math.nan), ValueError, "nan"),
    (lambda: make_moons(10, noise="0.1"), TypeError, "'0.1'"),
    (lambda: make_moons(10, seed=-2), ValueError, "-2"),
    (lambda: make_spiral(0), ValueError, "n_per_class.*0"),
    (lambda: make_spiral(10, 1), ValueError, "n_classes must be an int >= 2, got 1"),
    (lambda: make_spiral(10, 3.0), TypeError, "n_classes.*3.0"),
    (lambda: make_spiral(10, 3, noise=-1), ValueError, "noise.*-1"),
    (lambda: make_spiral(10, 3, seed="x"), ValueError, "'x'"),
])
def test_dataset_builders_validate_arguments(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_builtin_datasets_feed_the_dataloader():
    X, y = make_spiral(20, 3, seed=0)
    loader = DataLoader((X, y), batch_size=16, shuffle=True, seed=0)
    assert len(loader) == 4
    got = np.concatenate([yb for _, yb in loader])
    assert np.bincount(got).tolist() == [20, 20, 20]
