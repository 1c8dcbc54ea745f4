"""Shared helpers: the command line to compare with, .npy round trips, random inputs.

The Makefile runs these tests with ROPEKIT_LIBRARY (the library of its build) and ROPEKIT_CLI
(the command line of the same build); run by hand, they default to the source tree's build/.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
PYDIR = os.path.join(ROOT, "python")
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)
BUILD = os.environ.get("ROPEKIT_BUILD", os.path.join(ROOT, "build"))
CLI = os.environ.get("ROPEKIT_CLI", os.path.join(BUILD, "ropekit"))

import ropekit  # noqa: E402  (after the path is set)


def rng(seed=0):
    return np.random.default_rng(seed)


def randn(shape, dtype=np.float32, seed=0, scale=1.0):
    return (rng(seed).standard_normal(shape) * scale).astype(dtype)


def cli(args, check=True):
    """Run the command line; returns the CompletedProcess (text)."""
    p = subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True,
                       check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"ropekit {' '.join(map(str, args))} exited {p.returncode}: "
                             f"{p.stderr}")
    return p


# Python keyword -> command-line option (flags: True -> the bare option).
_FLAG = {"causal", "l2norm", "sinusoidal", "fixed_norm"}


def cli_options(opts, tmp):
    """attend()/rope() keywords as ropekit options; arrays are written to tmp as .npy."""
    args = []
    for key, val in opts.items():
        if val is None or val is False:
            continue
        name = "--" + key.replace("_", "-")
        if key in _FLAG:
            args.append(name)
        elif key == "proj":
            if isinstance(val, str):
                args.append("--" + val)           # --iid / --orthogonal
            else:
                path = os.path.join(tmp, "proj.npy")
                np.save(path, val)
                args += ["--proj", path]
        elif key == "bias":
            path = os.path.join(tmp, "bias.npy")
            np.save(path, val)
            args += ["--bias", path]
        elif key == "kv_len":
            args += ["--kv-len", ",".join(str(int(x)) for x in np.atleast_1d(val))]
        elif key == "precision":
            args += ["--precision", {"float32": "float", "float64": "double"}.get(val, val)]
        elif key == "rope_config":
            args += ["--rope-config", val]
        else:
            args += [name, val]
    return args


def cli_attend(tmp, q, k, v, variant, dout=None, **opts):
    """`ropekit attend` on the same arrays: the output, or (out, dq, dk, dv) with dout."""
    tmp = str(tmp)
    paths = {}
    for name, a in (("q", q), ("k", k), ("v", v), ("dout", dout)):
        if a is not None:
            paths[name] = os.path.join(tmp, f"{name}.npy")
            np.save(paths[name], a)
    outs = {n: os.path.join(tmp, f"{n}_out.npy") for n in ("out", "dq", "dk", "dv")}
    args = ["attend", "--variant", variant, "--q", paths["q"], "--k", paths["k"], "--v",
            paths["v"], "--out", outs["out"]] + cli_options(opts, tmp)
    if dout is not None:
        args += ["--dout", paths["dout"], "--dq", outs["dq"], "--dk", outs["dk"], "--dv",
                 outs["dv"]]
    cli(args)
    if dout is None:
        return np.load(outs["out"])
    return tuple(np.load(outs[n]) for n in ("out", "dq", "dk", "dv"))


def cli_rope(tmp, x, **opts):
    tmp = str(tmp)
    src, dst = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(src, x)
    inverse = opts.pop("inverse", False)
    cli(["rope", "--in", src, "--out", dst] + cli_options(opts, tmp) +
        (["--inverse"] if inverse else []))
    return np.load(dst)


def bits_equal(a, b):
    """Same dtype, shape and bits (NaN payloads included)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_bits(a, b, what=""):
    if bits_equal(a, b):
        return
    diff = (np.max(np.abs(np.asarray(a, np.float64) - b)) if np.shape(a) == np.shape(b)
            else "shapes differ")
    raise AssertionError(f"{what}: not the same bits; max |diff| = {diff} ({np.asarray(a).dtype} "
                         f"{np.shape(a)} vs {np.asarray(b).dtype} {np.shape(b)})")


@pytest.fixture
def tmp(tmp_path):
    return tmp_path
