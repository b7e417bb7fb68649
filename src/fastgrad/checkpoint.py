"""Checkpoints: a model's and an optimizer's state as one JSON file.

``save_checkpoint(model, optimizer, path, **meta)`` writes::

    {"format": "fastgrad-checkpoint", "version": 1,
     "model": {"type": "MLP", "state": model.state_dict()},
     "optimizer": {"type": "Adam", "state": optimizer.state_dict()} or null,
     "meta": {...your keyword arguments...}}

and ``load_checkpoint(model, optimizer, path)`` restores it and returns the
meta dict. Nothing is pickled: the file is plain, strict JSON that any JSON
reader accepts.

* Floats round-trip bit-exactly (Python writes the shortest repr that reads
  back to the same double, including ``-0.0``, subnormals and ``1e308``).
  JSON has no NaN or infinity, so non-finite floats are written as tagged
  objects ``{"__float__": "nan"}`` (also ``"-nan"``, ``"inf"``, ``"-inf"``)
  and read back as floats. (A NaN keeps its sign, not its payload bits.)
* The write is atomic: the text goes to a temporary file in the same
  directory, is flushed and fsync'ed, and then renamed over ``path``. A crash
  or an error at any point leaves the previous checkpoint at ``path`` as it
  was, and no temporary file behind.
* A load reads, decodes and validates everything -- the file, the format
  tag and version, the model state and the optimizer state -- before it
  changes anything. Any problem raises an error that names it and the path,
  and then the model and the optimizer are unchanged.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT", "VERSION"]

#: The value of the file's ``"format"`` field.
FORMAT = "fastgrad-checkpoint"
#: The newest format version this fastgrad writes and reads.
VERSION = 1

_TOP_KEYS = ("format", "version", "model", "optimizer", "meta")

# Tagged encodings of the floats JSON cannot spell.
_FLOAT_TAG = "__float__"
_DICT_TAG = "__dict__"  # wraps a user dict that would otherwise look like a tag
_NONFINITE = {"nan": math.nan, "-nan": -math.nan, "inf": math.inf, "-inf": -math.inf}


# -- encoding ---------------------------------------------------------------

def _float_token(x: float) -> Any:
    """A finite float as itself; nan/inf as a tagged object."""
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return {_FLOAT_TAG: "-nan" if math.copysign(1.0, x) < 0 else "nan"}
    return {_FLOAT_TAG: "inf" if x > 0 else "-inf"}


def _encode(obj: Any, where: str) -> Any:
    """Return ``obj`` as JSON-ready data: numbers, strings, bools, None, lists
    and str-keyed dicts, with non-finite floats tagged. numpy scalars become
    Python numbers, tuples become lists. Anything else raises TypeError
    naming ``where`` (e.g. ``meta['history'][2]``) and the type."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _float_token(float(obj))
    if isinstance(obj, (np.number, np.bool_)):
        return _encode(obj.item(), where)
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"{where} has a key {k!r} of type {type(k).__name__}; checkpoint "
                    "dicts need str keys (JSON would silently turn it into a string)")
            out[str(k)] = _encode(v, f"{where}[{k!r}]")
        if len(out) == 1 and next(iter(out)) in (_FLOAT_TAG, _DICT_TAG):
            out = {_DICT_TAG: out}
        return out
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__} ({_short(obj)}), which "
        "cannot be stored in a JSON checkpoint (accepted: numbers, strings, bools, None, "
        "and lists or str-keyed dicts of those)")


def _short(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        text = "<unrepresentable>"
    return text if len(text) <= 60 else text[:57] + "..."


# -- decoding ---------------------------------------------------------------

def _decode(obj: Any, where: str) -> Any:
    """Undo _encode's tagging: tagged floats become floats, wrapped dicts are
    unwrapped. A malformed tag raises ValueError naming ``where``."""
    if isinstance(obj, list):
        return [_decode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (key, value), = obj.items()
        if key == _FLOAT_TAG:
            if not isinstance(value, str) or value not in _NONFINITE:
                raise ValueError(
                    f"{where}: bad tagged float {obj!r} (accepted tags: "
                    f"{', '.join(repr(t) for t in _NONFINITE)})")
            return _NONFINITE[value]
        if key == _DICT_TAG:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: bad wrapped dict {_short(obj)} (expected an object)")
            return {k: _decode(v, f"{where}[{k!r}]") for k, v in value.items()}
    return {k: _decode(v, f"{where}[{k!r}]") for k, v in obj.items()}


# -- saving -----------------------------------------------------------------

def save_checkpoint(model: Any, optimizer: Any, path: str | os.PathLike[str], **meta: Any) -> None:
    """Write ``model``'s and ``optimizer``'s state and ``meta`` to ``path``
    as one JSON file, atomically.

    ``optimizer`` may be None (a model-only checkpoint). ``meta`` values must
    be JSON-able: numbers (numpy scalars are converted), strings, bools, None,
    and lists, tuples (read back as lists) or str-keyed dicts of those;
    anything else raises TypeError naming the key and the type, before any
    file is touched. Non-finite floats anywhere are stored as tagged objects,
    so the file is strict JSON.

    The text is written to a temporary file in ``path``'s directory, flushed,
    fsync'ed and renamed over ``path`` (then the directory is fsync'ed, where
    the platform allows). If anything fails, the temporary file is removed
    and a previous checkpoint at ``path`` is left untouched.
    """
    if not callable(getattr(model, "state_dict", None)):
        raise TypeError(f"save_checkpoint(): model must be a fastgrad Module (with state_dict()), "
                        f"got {type(model).__name__}")
    if optimizer is not None and not callable(getattr(optimizer, "state_dict", None)):
        raise TypeError(f"save_checkpoint(): optimizer must be a fastgrad Optimizer or None, "
                        f"got {type(optimizer).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(
            f"save_checkpoint(): path must be a str or os.PathLike of str, got {path!r}")

    # Everything that can fail on the data is done before the file system is touched.
    meta_enc = _encode(meta, "meta")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"type": type(model).__name__,
                  "state": _encode(model.state_dict(), "model state")},
        "optimizer": None if optimizer is None else {
            "type": type(optimizer).__name__,
            "state": _encode(optimizer.state_dict(), "optimizer state")},
        "meta": meta_enc,
    }
    text = json.dumps(doc, allow_nan=False) + "\n"
    _atomic_write(path, text.encode("ascii"))  # json.dumps escapes non-ASCII by default


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot save checkpoint {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save checkpoint {path!r}: it is a directory")
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    fd_owned = True  # until os.fdopen takes the descriptor over
    try:
        with os.fdopen(fd, "wb") as f:
            fd_owned = False
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if fd_owned:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _file_mode(path: str) -> int:
    """Permission bits for the new file: those of the checkpoint it replaces,
    else what a plain open() would give (0o666 minus the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    umask = None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); silently skipped where directories
    cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- loading ----------------------------------------------------------------

def load_checkpoint(model: Any, optimizer: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Restore ``model`` (and ``optimizer``, unless None) from the checkpoint
    at ``path`` and return its meta dict.

    The whole file is read, decoded and validated before anything changes:
    a missing file (FileNotFoundError), a directory (IsADirectoryError), a
    file that is not complete JSON, not a fastgrad checkpoint, of a newer
    format version, or whose model or optimizer state does not fit (wrong
    optimizer type, missing, unexpected or mis-sized entries) raises an error
    that names the problem and the path, and leaves ``model`` and
    ``optimizer`` exactly as they were. With ``optimizer=None`` a saved
    optimizer state is ignored; loading a model-only checkpoint with an
    optimizer is an error.

    The model class name stored in the file is informational: a model of
    another class loads if its state_dict has the same entries.
    """
    if not callable(getattr(model, "load_state_dict", None)):
        raise TypeError(f"load_checkpoint(): model must be a fastgrad Module (with "
                        f"load_state_dict()), got {type(model).__name__}")
    if optimizer is not None and not callable(getattr(optimizer, "load_state_dict", None)):
        raise TypeError(f"load_checkpoint(): optimizer must be a fastgrad Optimizer or None, "
                        f"got {type(optimizer).__name__}")
    path = os.fspath(path)
    doc = _read(path)
    model_type, model_state, opt_entry, meta = _check_document(doc, path)

    # 1. Validate the optimizer state without applying it.
    opt_state = None
    if optimizer is not None:
        opt_name = type(optimizer).__name__
        if opt_entry is None:
            raise ValueError(
                f"checkpoint {path!r} has no optimizer state (it was saved with optimizer=None); "
                f"cannot restore {opt_name}: pass optimizer=None to load only the model")
        saved_type, opt_state = opt_entry
        if saved_type != opt_name:
            raise ValueError(
                f"checkpoint {path!r} holds {saved_type!r} optimizer state; cannot load it "
                f"into {opt_name!r} (build a {saved_type} to resume, or pass optimizer=None)")
        check = getattr(optimizer, "_check_state_dict", None)
        if callable(check):
            try:
                check(opt_state)
            except Exception as e:
                raise ValueError(f"checkpoint {path!r}: optimizer state does not fit this "
                                 f"{opt_name}: {e}") from e

    # 2. The model: Module.load_state_dict validates everything, then applies
    #    (or raises and changes nothing).
    snapshot = model.state_dict()
    try:
        model.load_state_dict(model_state)
    except Exception as e:
        raise ValueError(f"checkpoint {path!r} holds the state of a {model_type!r} model, which "
                         f"does not fit this {type(model).__name__}: {e}") from e

    # 3. The optimizer (already validated); should it still fail, put the
    #    model back so that a failed load never leaves a half-loaded pair.
    if optimizer is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except BaseException as e:
            model.load_state_dict(snapshot)
            if isinstance(e, Exception):
                raise ValueError(f"checkpoint {path!r}: cannot load optimizer state into this "
                                 f"{type(optimizer).__name__}: {e}") from e
            raise
    return meta


def _read(path: str) -> Any:
    """Read and parse the file, with errors that name the path."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint path {path!r} is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(e.errno, f"no checkpoint file at {path!r}", path) from None
    if not raw.strip():
        raise ValueError(f"{path!r} is not a valid checkpoint: the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not a valid checkpoint: not UTF-8 text "
                         f"(byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path!r} is not a valid or complete checkpoint: invalid JSON ({e.msg}: line "
            f"{e.lineno}, column {e.colno}, byte {e.pos} of {len(raw)}); the file may be "
            "truncated or corrupted") from None
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path!r} is not a valid checkpoint: {e}") from None


def _check_document(doc: Any, path: str) -> tuple[str, dict, tuple[str, dict] | None, dict]:
    """Validate the envelope and decode tagged values. Returns (model type,
    model state, (optimizer type, optimizer state) or None, meta)."""
    def bad(problem: str) -> ValueError:
        return ValueError(f"{path!r} is not a valid fastgrad checkpoint: {problem}")

    if not isinstance(doc, dict):
        raise bad(f"the JSON is {_json_kind(doc)}, expected an object")
    fmt = doc.get("format")
    if fmt != FORMAT:
        if "format" not in doc:
            raise bad(f"no 'format' field (expected {FORMAT!r})")
        raise bad(f"format is {_short(fmt)}, expected {FORMAT!r}")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise bad(f"version must be an int >= 1, got {_short(version)}")
    if version > VERSION:
        raise ValueError(
            f"checkpoint {path!r} has format version {version}, written by a newer fastgrad; "
            f"this fastgrad supports version {VERSION} (upgrade fastgrad to load it)")
    missing = [k for k in _TOP_KEYS if k not in doc]
    extra = [k for k in doc if k not in _TOP_KEYS]
    if missing or extra:
        raise bad(f"missing fields {missing}, unexpected fields {extra} "
                  f"(version {VERSION} has exactly {list(_TOP_KEYS)})")

    try:
        model = _decode(doc["model"], "model")
        opt = _decode(doc["optimizer"], "optimizer")
        meta = _decode(doc["meta"], "meta")
    except ValueError as e:
        raise bad(str(e)) from None

    def entry(name: str, value: Any) -> tuple[str, dict]:
        if not isinstance(value, dict) or set(value) != {"type", "state"}:
            raise bad(f"{name!r} must be an object with exactly 'type' and 'state', got "
                      f"{_json_kind(value) if not isinstance(value, dict) else sorted(value)}")
        if not isinstance(value["type"], str):
            raise bad(f"{name}.type must be a string, got {_short(value['type'])}")
        if not isinstance(value["state"], dict):
            raise bad(f"{name}.state must be an object, got {_json_kind(value['state'])}")
        return value["type"], value["state"]

    model_type, model_state = entry("model", model)
    opt_entry = None if opt is None else entry("optimizer", opt)
    if not isinstance(meta, dict):
        raise bad(f"'meta' must be an object, got {_json_kind(meta)}")
    return model_type, model_state, opt_entry, meta


def _json_kind(x: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    kind = kinds.get(type(x), type(x).__name__)
    return f"{kind} ({_short(x)})" if not isinstance(x, (dict, list)) else kind
