"""One-sample inference of the stacked ensemble in C (``stack_kernel.c``).

:func:`compile_native` lays a fitted ``StandardScaler`` + ``StackingClassifier`` pipeline out
as two flat arrays (a small "program", see the kernel's header) that one C call evaluates:
the scaler, every tree walked to its leaf, naive Bayes, the meta-learner. It gives the
probabilities of :func:`cosim.detection.fast.compile_stack` (checked in the tests to 1e-12)
in a few microseconds instead of a hundred, and its few hundred kilobytes of tables stay in
cache where numpy's many small temporaries do not.

The kernel is compiled once with the C compiler (``$CC`` or ``cc``) into the cache
``native/`` (:func:`cosim.paths.cache_dir`), named by a hash of its source and flags, and
loaded with ctypes. Without a compiler, or for an estimator the kernel does not
know, :func:`compile_native` returns ``None`` and the numpy form is used.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cosim import paths
from cosim.detection.fast import TREE_ESTIMATORS, bayes_log_norm, boosting_init

SOURCE = Path(__file__).with_name("stack_kernel.c")
FLAGS = ("-O2", "-shared", "-fPIC", "-std=c99")
TREE, BOOST, BAYES, MLP = 0, 1, 2, 3
ACTIVATIONS = {"relu": 0, "tanh": 1, "logistic": 2, "identity": 3}


class _Unsupported(Exception):
    """An estimator or setting the kernel has no form for (the numpy form is used)."""


class _CompilerError(Exception):
    """The C compiler is missing or refuses the kernel (another directory would not help)."""


@functools.lru_cache(maxsize=1)
def kernel() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use, then cached on disk); ``None`` when it cannot
    be built or loaded (a warning says why)."""
    cc = os.environ.get("CC") or "cc"
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, cc.encode(), " ".join(FLAGS).encode(),
                                     platform.machine().encode(), platform.system().encode()])).hexdigest()
    name = f"stack_kernel-{key[:16]}.so"
    # a read-only cache still gets the kernel: then it is built under the temporary directory
    uid = os.getuid() if hasattr(os, "getuid") else 0
    dirs = [paths.cache_dir("native"), Path(tempfile.gettempdir()) / f"cosim-{uid}"]
    lib, errors = None, []
    for directory in dirs:
        try:
            lib = ctypes.CDLL(str(_build(directory / name, cc)))
            break
        except _CompilerError as exc:
            errors.append(str(exc))
            break
        except OSError as exc:  # a directory that cannot be written, a file that cannot be loaded
            errors.append(str(exc))
    if lib is None:
        warnings.warn(f"stacked IDS: the C kernel is not available ({'; '.join(errors)}); using the numpy form",
                      RuntimeWarning, stacklevel=2)
        return None
    lib.stack_proba.restype = ctypes.c_int64
    lib.stack_proba.argtypes = [ctypes.c_void_p] * 5
    return lib


def _build(target: Path, cc: str) -> Path:
    """Compile the kernel into ``target`` unless it is there (``_CompilerError``, or ``OSError``
    for the directory)."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        try:
            proc = subprocess.run([*cc.split(), *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True,
                                  text=True)
        except FileNotFoundError:
            raise _CompilerError(f"C compiler {cc!r} not found (set $CC)") from None
        if proc.returncode != 0:
            raise _CompilerError(f"{cc} failed: {proc.stderr.strip()[:500]}")
        os.replace(tmp, target)  # atomic: parallel builders leave one complete file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class _Program:
    """The ``ix`` (int64) and ``dv`` (double) arrays the kernel reads."""

    def __init__(self, n_estimators: int) -> None:
        self.ix: list[int] = [0] * (5 + n_estimators)
        self.dv: list[np.ndarray] = []
        self.n_dv = 0
        self.widest = 1  # scratch the largest estimator needs

    def doubles(self, a: Any) -> int:
        arr = np.ascontiguousarray(a, dtype=np.float64).ravel()
        self.dv.append(arr)
        self.n_dv += arr.size
        return self.n_dv - arr.size

    def ints(self, a: Any) -> int:
        values = np.asarray(a, dtype=np.int64).ravel().tolist()
        self.ix.extend(values)
        return len(self.ix) - len(values)

    def estimator(self, slot: int, est: Any, n_in: int) -> int:
        """Lay out ``est`` and point header slot ``5 + slot`` at it; returns its number of outputs."""
        name = type(est).__name__
        if name == "DecisionTreeClassifier":
            body, n_out = self._tree(est.tree_)
            kind = TREE
        elif name == "GradientBoostingClassifier":
            body, n_out = self._boosting(est)
            kind = BOOST
        elif name == "GaussianNB":
            k = len(est.class_prior_)
            body, n_out = [k, self.doubles(est.theta_), self.doubles(est.var_), self.doubles(bayes_log_norm(est))], k
            kind = BAYES
        elif name == "MLPClassifier":
            body, n_out = self._mlp(est)
            kind = MLP
        else:
            raise _Unsupported(name)
        self.ix[5 + slot] = len(self.ix)
        self.ix.extend([kind, n_in, n_out, *body])
        return n_out

    def _tree(self, tree: Any) -> tuple[list[int], int]:
        value = tree.value.reshape(tree.node_count, -1)
        k = value.shape[1]
        return [self.ints(tree.feature), self.ints(tree.children_left), self.ints(tree.children_right),
                self.doubles(tree.threshold), self.doubles(value), k], (2 if k == 2 else k)

    def _boosting(self, est: Any) -> tuple[list[int], int]:
        stages = est.estimators_  # (n_stages, K) regression trees
        n_stages, k = stages.shape
        trees = [stages[i, j].tree_ for i in range(n_stages) for j in range(k)]
        if any(t.value.shape[1:] != (1, 1) for t in trees):
            raise _Unsupported("boosting with multi-output trees")
        roots, feature, left, right, threshold, value, offset = [], [], [], [], [], [], 0
        for t in trees:
            roots.append(offset)
            feature.append(t.feature)
            left.append(np.where(t.children_left == -1, -1, t.children_left + offset))
            right.append(np.where(t.children_right == -1, -1, t.children_right + offset))
            threshold.append(t.threshold)
            value.append(t.value[:, 0, 0])
            offset += t.node_count
        init = boosting_init(est)
        self.widest = max(self.widest, k)
        body = [len(trees), k, self.ints(roots), self.ints(np.concatenate(feature)), self.ints(np.concatenate(left)),
                self.ints(np.concatenate(right)), self.ints(np.tile(np.arange(k), n_stages)),
                self.doubles(np.concatenate(threshold)), self.doubles(np.concatenate(value)), self.doubles(init),
                self.doubles([float(est.learning_rate)])]
        return body, (2 if k == 1 else k)

    def _mlp(self, est: Any) -> tuple[list[int], int]:
        if est.activation not in ACTIVATIONS:
            raise _Unsupported(f"MLP activation '{est.activation}'")
        if est.out_activation_ not in ("softmax", "logistic"):
            raise _Unsupported(f"MLP output '{est.out_activation_}'")
        hidden = [w.shape[1] for w in est.coefs_[:-1]] or [1]
        widest = max(hidden)
        self.widest = max(self.widest, 2 * widest)
        layers: list[int] = []
        for w, b in zip(est.coefs_, est.intercepts_, strict=True):
            layers += [w.shape[0], w.shape[1], self.doubles(w), self.doubles(b)]
        soft = est.out_activation_ == "softmax"
        n_out = est.coefs_[-1].shape[1] if soft else 2
        return [len(est.coefs_), ACTIVATIONS[est.activation], int(soft), widest, *layers], n_out


class _NativeStack:
    """``proba(x)`` through the kernel: holds the program and the buffers the C call writes
    into (their addresses are passed as plain integers, so they must live as long as this)."""

    def __init__(self, call: Any, ix: np.ndarray, dv: np.ndarray, d: int, n_out: int, work: int) -> None:
        self.ix, self.dv = ix, dv
        self.x = np.empty(d)
        self.out = np.empty(n_out)
        self.work = np.empty(work)
        self._call = call
        self._addresses = tuple(a.ctypes.data for a in (self.ix, self.dv, self.x, self.out, self.work))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.x[:] = x
        n = self._call(*self._addresses)
        return self.out[:n].copy()


def compile_native(pipeline: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """``proba(x)`` for one raw sample ``x`` (1-D) through the C kernel, or ``None`` when the
    kernel is unavailable or does not know one of the pipeline's estimators.

    The returned function reuses its buffers: call it from one thread at a time.
    """
    scaler, stack = pipeline.steps[0][1], pipeline.steps[1][1]
    if getattr(stack, "passthrough", False):
        return None
    lib = kernel()
    if lib is None:
        return None
    d = len(scaler.mean_)
    prog = _Program(len(stack.estimators_) + 1)
    try:
        total = 0
        for slot, est in enumerate(stack.estimators_):
            n = prog.estimator(slot, est, d)
            total += 1 if n == 2 else n
        n_out = prog.estimator(len(stack.estimators_), stack.final_estimator_, total)
    except _Unsupported:
        return None
    prog.ix[:5] = [d, prog.doubles(scaler.mean_), prog.doubles(scaler.scale_), len(stack.estimators_),
                   int(type(stack.final_estimator_).__name__ in TREE_ESTIMATORS)]
    return _NativeStack(lib.stack_proba, np.asarray(prog.ix, dtype=np.int64), np.concatenate(prog.dv), d,
                        max(n_out, 2), 2 * d + 4 * (total + n_out + 2) + 2 * prog.widest + 64)
