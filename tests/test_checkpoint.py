"""Tests of fastgrad.checkpoint: JSON checkpoints of a model and an optimizer."""

import json
import math
import os
import struct

import numpy as np
import pytest

import fastgrad
from fastgrad import Value
from fastgrad.checkpoint import load_checkpoint, save_checkpoint
from fastgrad.losses import mse
from fastgrad.nn import MLP, Layer, Sequential
from fastgrad.optim import SGD, Adam, AdamW, Momentum

# -- helpers -----------------------------------------------------------------

XS = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [-2.0, 1.0, 0.1], [0.0, -0.3, 0.9]]
YS = [[1.0, -1.0], [0.5, 0.0], [-0.5, 2.0], [0.0, 0.25]]

OPTIMIZERS = {
    "sgd-momentum": lambda m: SGD(m.named_parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda m: SGD(m.named_parameters(), lr=0.05, momentum=0.8, nesterov=True),
    "momentum": lambda m: Momentum(m.named_parameters(), lr=0.03),
    "adam": lambda m: Adam(m.named_parameters(), lr=0.01, weight_decay=1e-3),
    "adamw": lambda m: AdamW(m.named_parameters(), lr=0.01),
}


def make_model(seed, sizes=(4, 4, 2)):
    fastgrad.manual_seed(seed)
    return MLP(3, list(sizes))


def train(model, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        losses = [mse(model([Value(x) for x in xs]), ys) for xs, ys in zip(XS, YS)]
        loss = fastgrad.sum(losses)
        loss.backward()
        opt.step()


def bits(x):
    """A float's exact IEEE-754 bit pattern."""
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def exact(obj):
    """obj with every float replaced by its bit pattern, so == is bit-exact
    (and NaN compares equal to the same NaN, -0.0 differs from 0.0)."""
    if isinstance(obj, float):
        return ("float", bits(obj))
    if isinstance(obj, np.ndarray):
        return ("array", [exact(v) for v in obj.tolist()])
    if isinstance(obj, (list, tuple)):
        return [exact(v) for v in obj]
    if isinstance(obj, dict):
        return {k: exact(v) for k, v in obj.items()}
    return obj


def param_bits(model):
    return [bits(p.data) for p in model.parameters()]


def snapshot(model, opt):
    return exact(model.state_dict()), exact(opt.state_dict() if opt is not None else None)


def strict_loads(text):
    """json.loads that refuses NaN/Infinity tokens."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def files_in(directory):
    return sorted(os.listdir(directory))


# -- round trips and continued training -------------------------------------

@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_resumed_training_is_bit_identical(tmp_path, kind):
    make_opt = OPTIMIZERS[kind]
    model = make_model(0)
    opt = make_opt(model)
    train(model, opt, 4)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path, epoch=4)
    train(model, opt, 6)  # the uninterrupted run
    expected = param_bits(model)
    expected_opt = exact(opt.state_dict())

    fresh = make_model(123)
    fresh_opt = make_opt(fresh)
    assert param_bits(fresh) != expected
    meta = load_checkpoint(fresh, fresh_opt, path)
    assert meta == {"epoch": 4}
    train(fresh, fresh_opt, 6)
    assert param_bits(fresh) == expected
    assert exact(fresh_opt.state_dict()) == expected_opt


@pytest.mark.parametrize("kind", ["sgd-momentum", "momentum", "adam", "adamw"])
def test_resuming_without_optimizer_state_differs(tmp_path, kind):
    # Shows the test above depends on the optimizer state being restored.
    make_opt = OPTIMIZERS[kind]
    model = make_model(0)
    opt = make_opt(model)
    train(model, opt, 4)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path)
    train(model, opt, 3)
    fresh = make_model(5)
    load_checkpoint(fresh, None, path)  # model only: the saved optimizer state is ignored
    fresh_opt = make_opt(fresh)
    train(fresh, fresh_opt, 3)
    assert param_bits(fresh) != param_bits(model)


def test_hyperparameters_and_step_are_restored(tmp_path):
    model = make_model(0)
    opt = Adam(model.named_parameters(), lr=0.02, betas=(0.8, 0.95), eps=1e-6)
    train(model, opt, 3)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path)
    fresh = make_model(1)
    fresh_opt = Adam(fresh.named_parameters(), lr=0.5)
    load_checkpoint(fresh, fresh_opt, path)
    group = fresh_opt.param_groups[0]
    assert group["lr"] == 0.02 and tuple(group["betas"]) == (0.8, 0.95) and group["eps"] == 1e-6
    assert fresh_opt.state[0]["step"] == 3
    train(model, opt, 2)
    train(fresh, fresh_opt, 2)
    assert param_bits(fresh) == param_bits(model)


def test_model_only_checkpoint_round_trip(tmp_path):
    model = make_model(0)
    path = tmp_path / "model.json"
    save_checkpoint(model, None, str(path), note="weights")
    doc = json.loads(path.read_text())
    assert doc["optimizer"] is None
    fresh = make_model(9)
    assert load_checkpoint(fresh, None, str(path)) == {"note": "weights"}
    assert param_bits(fresh) == param_bits(model)


def test_optimizer_state_is_ignored_when_loading_with_optimizer_none(tmp_path):
    model = make_model(0)
    opt = OPTIMIZERS["adam"](model)
    train(model, opt, 2)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path)
    fresh = make_model(2)
    load_checkpoint(fresh, None, path)
    assert param_bits(fresh) == param_bits(model)


def test_file_layout(tmp_path):
    model = make_model(0)
    opt = OPTIMIZERS["adamw"](model)
    train(model, opt, 1)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path, epoch=1)
    doc = strict_loads(path.read_text(encoding="ascii"))
    assert list(doc) == ["format", "version", "model", "optimizer", "meta"]
    assert doc["format"] == "fastgrad-checkpoint" and doc["version"] == 1
    assert doc["model"] == {"type": "MLP", "state": model.state_dict()}
    assert doc["optimizer"]["type"] == "AdamW"
    assert doc["optimizer"]["state"] == json.loads(json.dumps(opt.state_dict()))
    assert doc["meta"] == {"epoch": 1}
    assert files_in(tmp_path) == ["ckpt.json"]


def test_model_class_name_is_informational(tmp_path):
    # A Sequential of the same layers has the same state_dict names as the MLP.
    model = make_model(0, sizes=(4, 2))
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, None, path)
    fastgrad.manual_seed(7)
    seq = Sequential(Layer(3, 4), Layer(4, 2, nonlin=False))
    assert list(seq.state_dict()) == list(model.state_dict())
    load_checkpoint(seq, None, path)
    assert param_bits(seq) == param_bits(model)


# -- floats ------------------------------------------------------------------

SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 2.225073858507201e-308, 2.2250738585072014e-308,
           1e308, -1e308, 1.7976931348623157e308, 0.1, 1 / 3, math.pi, -2.5e-310,
           math.inf, -math.inf, math.nan, -math.nan, 123456789.123456789, 1e-300]


def test_special_floats_round_trip_bit_exactly(tmp_path):
    model = make_model(0)
    params = model.parameters()
    assert len(params) >= len(SPECIAL)
    for p, x in zip(params, SPECIAL):
        p.data = x
    before = param_bits(model)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, None, path, values=SPECIAL)
    fresh = make_model(3)
    meta = load_checkpoint(fresh, None, path)
    assert param_bits(fresh) == before
    assert [bits(x) for x in meta["values"]] == [bits(x) for x in SPECIAL]
    assert math.copysign(1.0, meta["values"][1]) == -1.0          # -0.0 keeps its sign
    assert math.isnan(meta["values"][16]) and math.copysign(1.0, meta["values"][16]) == -1.0
    assert meta["values"][14] == -math.inf


def test_nonfinite_values_are_strict_json(tmp_path):
    model = make_model(0)
    opt = OPTIMIZERS["adam"](model)
    train(model, opt, 2)
    params = model.parameters()
    params[0].data, params[1].data, params[2].data = math.nan, math.inf, -math.inf
    opt.state[0]["exp_avg"][0] = math.inf
    opt.state[0]["exp_avg_sq"][1] = math.nan
    opt.state[0]["exp_avg"][2] = -math.inf
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path, loss=math.nan, best=-math.inf, curve=[1.0, math.inf])
    text = path.read_text(encoding="ascii")
    for token in ("NaN", "Infinity"):
        assert token not in text
    doc = strict_loads(text)  # would raise on a NaN/Infinity token
    w0 = doc["model"]["state"]["layers.0.neurons.0.w"]
    assert w0[:3] == [{"__float__": "nan"}, {"__float__": "inf"}, {"__float__": "-inf"}]
    assert doc["meta"]["loss"] == {"__float__": "nan"}

    fresh = make_model(4)
    fresh_opt = OPTIMIZERS["adam"](fresh)
    meta = load_checkpoint(fresh, fresh_opt, path)
    assert snapshot(fresh, fresh_opt) == snapshot(model, opt)
    fp = fresh.parameters()
    assert math.isnan(fp[0].data) and fp[1].data == math.inf and fp[2].data == -math.inf
    assert fresh_opt.state[0]["exp_avg"][0] == math.inf
    assert math.isnan(fresh_opt.state[0]["exp_avg_sq"][1])
    assert fresh_opt.state[0]["exp_avg"][2] == -math.inf
    assert math.isnan(meta["loss"]) and meta["best"] == -math.inf
    assert meta["curve"] == [1.0, math.inf]


# -- meta ----------------------------------------------------------------------

def test_meta_round_trip(tmp_path):
    model = make_model(0)
    meta = dict(
        epoch=7, lr=0.001, name="run-ä→✓", done=False, nothing=None, big=2**100,
        history=[{"loss": 0.5, "acc": 0.9}, {"loss": 0.25, "acc": [1, 2, (3, 4)]}],
        pair=(1, "two"),
        np_float=np.float32(0.1), np_int=np.int64(-3), np_bool=np.bool_(True),
        np_double=np.float64(2.5),
        looks_tagged={"__float__": "nan"}, looks_wrapped={"__dict__": {"a": 1}},
        nested={"__dict__": 5}, empty={}, __float__="a kwarg named like the tag",
    )
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, None, path, **meta)
    got = load_checkpoint(make_model(1), None, path)
    assert got == {
        "epoch": 7, "lr": 0.001, "name": "run-ä→✓", "done": False, "nothing": None,
        "big": 2**100,
        "history": [{"loss": 0.5, "acc": 0.9}, {"loss": 0.25, "acc": [1, 2, [3, 4]]}],
        "pair": [1, "two"],
        "np_float": float(np.float32(0.1)), "np_int": -3, "np_bool": True, "np_double": 2.5,
        "looks_tagged": {"__float__": "nan"}, "looks_wrapped": {"__dict__": {"a": 1}},
        "nested": {"__dict__": 5}, "empty": {}, "__float__": "a kwarg named like the tag",
    }
    assert type(got["np_int"]) is int and type(got["np_float"]) is float
    assert type(got["np_bool"]) is bool and type(got["done"]) is bool


@pytest.mark.parametrize("meta, where, typename", [
    ({"arr": np.zeros(3)}, "meta['arr']", "ndarray"),
    ({"tags": {1, 2}}, "meta['tags']", "set"),
    ({"obj": object()}, "meta['obj']", "object"),
    ({"hist": [1.0, {"x": b"bytes"}]}, "meta['hist'][1]['x']", "bytes"),
    ({"cfg": {1: "a"}}, "meta['cfg']", "int"),
    ({"z": 1 + 2j}, "meta['z']", "complex"),
    ({"v": Value(1.0)}, "meta['v']", "Value"),
])
def test_bad_meta_raises_before_writing(tmp_path, meta, where, typename):
    model = make_model(0)
    path = tmp_path / "ckpt.json"
    with pytest.raises(TypeError) as err:
        save_checkpoint(model, None, path, **meta)
    assert where in str(err.value) and typename in str(err.value)
    assert files_in(tmp_path) == []
    # ... and a previous checkpoint stays as it was.
    save_checkpoint(model, None, path, ok=1)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(model, None, path, **meta)
    assert path.read_bytes() == before
    assert files_in(tmp_path) == ["ckpt.json"]


# -- atomic writes -------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    """A trained model + Adam, a good checkpoint of them, and its bytes."""
    model = make_model(0)
    opt = OPTIMIZERS["adam"](model)
    train(model, opt, 2)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path, epoch=2)
    return model, opt, path, path.read_bytes()


def _fail(*args, **kwargs):
    raise OSError("simulated crash")


@pytest.mark.parametrize("target", ["replace", "fsync", "chmod"])
def test_crash_during_save_keeps_previous_checkpoint(saved, monkeypatch, target):
    model, opt, path, before = saved
    train(model, opt, 1)  # new state that must NOT reach the file
    monkeypatch.setattr(os, target, _fail)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(model, opt, path, epoch=3)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["ckpt.json"]


def test_crash_mid_write_keeps_previous_checkpoint(saved, monkeypatch):
    model, opt, path, before = saved
    train(model, opt, 1)
    real_fdopen = os.fdopen
    written = []

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            written.append(os.listdir(path.parent))
            raise KeyboardInterrupt  # even a BaseException cleans up

        def fileno(self):
            return self.f.fileno()

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k)))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, opt, path)
    monkeypatch.undo()
    assert len(written[0]) == 2  # the temp file really existed, beside the checkpoint
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["ckpt.json"]
    # and the previous checkpoint still loads
    fresh = make_model(1)
    fresh_opt = OPTIMIZERS["adam"](fresh)
    assert load_checkpoint(fresh, fresh_opt, path) == {"epoch": 2}


def test_crash_while_writing_a_new_path_leaves_nothing(tmp_path, monkeypatch):
    model = make_model(0)
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(OSError):
        save_checkpoint(model, None, tmp_path / "new.json")
    monkeypatch.undo()
    assert files_in(tmp_path) == []


def test_temp_file_is_in_the_target_directory(saved, monkeypatch):
    model, opt, path, _ = saved
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.dirname(os.path.abspath(src)), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    save_checkpoint(model, opt, path)
    assert seen == [(str(path.parent), str(path))]


def test_write_is_fsynced_before_the_rename_and_the_directory_after(saved, monkeypatch):
    import stat
    model, opt, path, _ = saved
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint(model, opt, path)
    assert events == ["fsync-file", "replace", "fsync-dir"]


def test_save_errors_name_the_path(tmp_path):
    model = make_model(0)
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        save_checkpoint(model, None, tmp_path / "no-such-dir" / "ckpt.json")
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError, match="adir"):
        save_checkpoint(model, None, tmp_path / "adir")
    assert files_in(tmp_path) == ["adir"] and files_in(tmp_path / "adir") == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_file_mode_follows_umask_and_previous_file(tmp_path):
    model = make_model(0)
    old = os.umask(0o022)
    try:
        save_checkpoint(model, None, tmp_path / "a.json")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "a.json", 0o600)
        save_checkpoint(model, None, tmp_path / "a.json")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# -- bad loads -----------------------------------------------------------------

@pytest.fixture
def target():
    """A different model + Adam with non-trivial state: what a bad load must not touch."""
    model = make_model(42)
    opt = OPTIMIZERS["adam"](model)
    train(model, opt, 1)
    return model, opt


def _doc(path):
    return json.loads(path.read_text())


def _write(path, doc):
    path.write_text(json.dumps(doc))


def _edit(fn):
    def apply(path):
        doc = _doc(path)
        fn(doc)
        _write(path, doc)
    return apply


W0 = "layers.0.neurons.0.w"


def _del_model_key(doc):
    del doc["model"]["state"][W0]


def _add_model_key(doc):
    doc["model"]["state"]["layers.9.w"] = [1.0]


def _shorten_model_entry(doc):
    doc["model"]["state"][W0].pop()


def _string_in_model(doc):
    doc["model"]["state"]["layers.0.neurons.1.b"] = "zero"


def _shorten_buffer(doc):
    doc["optimizer"]["state"]["state"][0]["exp_avg"].pop()


def _bad_num_params(doc):
    doc["optimizer"]["state"]["param_groups"][0]["num_params"] = 3


def _bad_lr(doc):
    doc["optimizer"]["state"]["param_groups"][0]["lr"] = -1.0


def _bad_step(doc):
    doc["optimizer"]["state"]["state"][0]["step"] = -4


def _missing_buffer(doc):
    del doc["optimizer"]["state"]["state"][0]["exp_avg_sq"]


def _longer_names(doc):
    doc["optimizer"]["state"]["param_groups"][0]["names"].append("extra.w")


def _names_not_list(doc):
    doc["optimizer"]["state"]["param_groups"][0]["names"] = "abc"


def _bad_tag(doc):
    doc["model"]["state"][W0][0] = {"__float__": "banana"}


def _set(key, value):
    def fn(doc):
        doc[key] = value
    return fn


def _drop(key):
    def fn(doc):
        del doc[key]
    return fn


def _raw(text):
    def apply(path):
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return apply


BAD_FILES = {
    # name: (how to spoil the good file, exception, fragments the message must contain)
    "empty": (_raw(""), ValueError, ["empty"]),
    "not-json": (_raw("hello, world"), ValueError, ["not a valid or complete checkpoint"]),
    "binary": (_raw(b"\x80\x81\xfe\x00"), ValueError, ["not a valid checkpoint", "UTF-8"]),
    "array": (_raw("[1, 2, 3]"), ValueError, ["array", "expected an object"]),
    "number": (_raw("42"), ValueError, ["expected an object"]),
    "null": (_raw("null"), ValueError, ["expected an object"]),
    "wrong-format": (_edit(_set("format", "pytorch")), ValueError,
                     ["'pytorch'", "fastgrad-checkpoint"]),
    "no-format": (_edit(_drop("format")), ValueError, ["no 'format'"]),
    "newer-version": (_edit(_set("version", 2)), ValueError, ["version 2", "supports version 1"]),
    "string-version": (_edit(_set("version", "1")), ValueError, ["version", "'1'"]),
    "no-meta": (_edit(_drop("meta")), ValueError, ["missing fields ['meta']"]),
    "extra-field": (_edit(_set("extra", 1)), ValueError, ["unexpected fields ['extra']"]),
    "model-not-object": (_edit(_set("model", [1, 2])), ValueError, ["'model'", "array"]),
    "meta-not-object": (_edit(_set("meta", 3)), ValueError, ["'meta'", "number"]),
    "missing-model-key": (_edit(_del_model_key), ValueError, ["missing keys", W0, "'MLP'"]),
    "unexpected-model-key": (_edit(_add_model_key), ValueError, ["unexpected keys", "layers.9.w"]),
    "mis-sized-model-entry": (_edit(_shorten_model_entry), ValueError, [W0, "list of 3 numbers"]),
    "non-number-in-model": (_edit(_string_in_model), ValueError,
                            ["layers.0.neurons.1.b", "'zero'"]),
    "bad-float-tag": (_edit(_bad_tag), ValueError, ["bad tagged float", "banana"]),
    "mis-sized-buffer": (_edit(_shorten_buffer), ValueError, ["exp_avg", "optimizer"]),
    "missing-buffer": (_edit(_missing_buffer), ValueError, ["exp_avg_sq"]),
    "wrong-num-params": (_edit(_bad_num_params), ValueError, ["3 parameters"]),
    "bad-hyperparameter": (_edit(_bad_lr), ValueError, ["learning rate", "-1.0"]),
    "bad-step": (_edit(_bad_step), ValueError, ["step", "-4"]),
    "longer-names": (_edit(_longer_names), ValueError, ["optimizer state does not fit"]),
    "names-not-list": (_edit(_names_not_list), ValueError, ["optimizer state does not fit"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_checkpoint_leaves_model_and_optimizer_untouched(saved, target, case):
    _, _, path, _ = saved
    spoil, exc, fragments = BAD_FILES[case]
    spoil(path)
    model, opt = target
    before = snapshot(model, opt)
    with pytest.raises(exc) as err:
        load_checkpoint(model, opt, path)
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert snapshot(model, opt) == before


def test_missing_file(tmp_path, target):
    model, opt = target
    before = snapshot(model, opt)
    path = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint(model, opt, path)
    assert str(path) in str(err.value)
    assert snapshot(model, opt) == before


def test_directory(tmp_path, target):
    model, opt = target
    before = snapshot(model, opt)
    with pytest.raises(IsADirectoryError) as err:
        load_checkpoint(model, opt, tmp_path)
    assert str(tmp_path) in str(err.value) and "directory" in str(err.value)
    assert snapshot(model, opt) == before


def test_optimizer_error_after_valid_model_state_leaves_model_untouched(saved, target):
    # The model part of this file is valid for `model`; only the optimizer
    # part is wrong. The model must not have been loaded.
    _, _, path, _ = saved
    _edit(_shorten_buffer)(path)
    model, opt = target
    assert _doc(path)["model"]["state"].keys() == model.state_dict().keys()
    before = snapshot(model, opt)
    with pytest.raises(ValueError):
        load_checkpoint(model, opt, path)
    assert snapshot(model, opt) == before
    load_checkpoint(model, None, path)  # the model part alone is fine
    assert snapshot(model, opt)[0] != before[0]


@pytest.mark.parametrize("saved_kind, load_kind, saved_name, load_name", [
    ("adam", "sgd-momentum", "Adam", "SGD"),
    ("adamw", "adam", "AdamW", "Adam"),
    ("momentum", "sgd-momentum", "Momentum", "SGD"),
    ("sgd-momentum", "adamw", "SGD", "AdamW"),
])
def test_wrong_optimizer_type(tmp_path, saved_kind, load_kind, saved_name, load_name):
    model = make_model(0)
    opt = OPTIMIZERS[saved_kind](model)
    train(model, opt, 1)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path)
    other = make_model(1)
    other_opt = OPTIMIZERS[load_kind](other)
    train(other, other_opt, 1)
    before = snapshot(other, other_opt)
    with pytest.raises(ValueError) as err:
        load_checkpoint(other, other_opt, path)
    message = str(err.value)
    assert f"'{saved_name}'" in message and f"'{load_name}'" in message and str(path) in message
    assert f"holds '{saved_name}' optimizer state" in message
    assert snapshot(other, other_opt) == before


def test_model_only_file_with_an_optimizer(tmp_path, target):
    path = tmp_path / "model.json"
    save_checkpoint(make_model(0), None, path)
    model, opt = target
    before = snapshot(model, opt)
    with pytest.raises(ValueError) as err:
        load_checkpoint(model, opt, path)
    assert "no optimizer state" in str(err.value) and str(path) in str(err.value)
    assert "optimizer=None" in str(err.value)
    assert snapshot(model, opt) == before


def test_different_architecture(saved):
    _, _, path, _ = saved
    model = make_model(1, sizes=(5, 2))
    opt = OPTIMIZERS["adam"](model)
    before = snapshot(model, opt)
    with pytest.raises(ValueError) as err:
        load_checkpoint(model, opt, path)
    assert str(path) in str(err.value)
    assert snapshot(model, opt) == before
    with pytest.raises(ValueError) as err:
        load_checkpoint(model, None, path)  # model alone: the state dict names differ
    assert "'MLP'" in str(err.value) and "missing keys" in str(err.value)
    assert snapshot(model, opt) == before


def test_bad_optimizer_state_is_caught_before_the_model_is_touched(saved, target, monkeypatch):
    # Not even a load-then-restore: the model's load_state_dict is never called.
    _, _, path, _ = saved
    _edit(_bad_step)(path)
    model, opt = target
    calls = []
    monkeypatch.setattr(model, "load_state_dict", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match="step"):
        load_checkpoint(model, opt, path)
    assert calls == []


def test_failing_optimizer_load_rolls_the_model_back(tmp_path):
    # If the optimizer fails after its dry run passed, the model (already
    # loaded by then) must be put back.
    class FlakyAdam(Adam):
        def load_state_dict(self, state_dict):
            raise RuntimeError("disk on fire")

    model = make_model(0)
    opt = FlakyAdam(model.named_parameters(), lr=0.01)
    train(model, opt, 2)
    path = tmp_path / "ckpt.json"
    save_checkpoint(model, opt, path)
    other = make_model(1)
    other_opt = FlakyAdam(other.named_parameters(), lr=0.01)
    train(other, other_opt, 1)
    before = snapshot(other, other_opt)
    with pytest.raises(ValueError, match="disk on fire"):
        load_checkpoint(other, other_opt, path)
    assert snapshot(other, other_opt) == before


def test_truncated_checkpoint_at_every_length_is_rejected(tmp_path):
    model = make_model(0, sizes=(2, 2))
    opt = OPTIMIZERS["adam"](model)
    train(model, opt, 1)
    good = tmp_path / "good.json"
    save_checkpoint(model, opt, good, epoch=1, loss=math.nan)
    raw = good.read_bytes()
    bad = tmp_path / "bad.json"
    other = make_model(1, sizes=(2, 2))
    other_opt = OPTIMIZERS["adam"](other)
    before = snapshot(other, other_opt)
    end = len(raw.rstrip())  # the last byte is the final newline
    for cut in range(end):
        bad.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="not a valid") as err:
            load_checkpoint(other, other_opt, bad)
        assert str(bad) in str(err.value)
        assert snapshot(other, other_opt) == before, cut
    bad.write_bytes(raw[:end])  # everything but the trailing newline: still complete
    load_checkpoint(other, other_opt, bad)
    assert param_bits(other) == param_bits(model)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75, 0.99])
def test_truncated_large_checkpoint(saved, target, fraction):
    _, _, path, raw = saved
    path.write_bytes(raw[: int(len(raw) * fraction)])
    model, opt = target
    before = snapshot(model, opt)
    with pytest.raises(ValueError) as err:
        load_checkpoint(model, opt, path)
    assert "not a valid or complete checkpoint" in str(err.value)
    assert "truncated" in str(err.value)
    assert snapshot(model, opt) == before


def test_wrong_argument_types(tmp_path):
    with pytest.raises(TypeError, match="model"):
        save_checkpoint(object(), None, tmp_path / "x.json")
    with pytest.raises(TypeError, match="optimizer"):
        save_checkpoint(make_model(0), "adam", tmp_path / "x.json")
    assert files_in(tmp_path) == []


def test_random_state_in_meta_resumes_dropout_exactly(tmp_path):
    """The README's recipe: the generator's state rides in the meta, and
    after restoring it the dropout masks repeat exactly."""
    from fastgrad import Dropout, default_generator, manual_seed

    manual_seed(7)
    model = fastgrad.nn.MLP(3, [4, 2])
    path = tmp_path / "rng.json"
    save_checkpoint(model, None, path, rng=default_generator().bit_generator.state)
    drop = Dropout(0.5)
    first = [v.data for v in drop([Value(1.0)] * 64)]
    meta = load_checkpoint(model, None, path)
    default_generator().bit_generator.state = meta["rng"]
    again = [v.data for v in drop([Value(1.0)] * 64)]
    assert again == first
    assert 0 < first.count(0.0) < 64
