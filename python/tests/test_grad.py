"""Gradients: attend(..., dout=) and Attention.forward / backward against `ropekit attend
--dout --dq --dk --dv` (bit for bit), the NumPy softmax gradient, finite differences; grouped
query attention; the kinds without a backward."""
import re

import numpy as np
import pytest

import reference as ref
import ropekit
from conftest import assert_bits, cli, cli_attend, randn
from test_attend import BIAS_H, D, D_V, N_KV, N_Q, THREADS, qkv

def grads_or_skip(*args, **kw):
    """attend(..., dout=) or a skip naming the kind the library has no backward for (yet)."""
    try:
        return ropekit.attend(*args, **kw)
    except ropekit.Error as e:
        if e.code != ropekit.EUNSUP:
            raise
        pytest.skip(f"the library has no backward for {args[3]}: {e.message}")


CASES = [
    ("softmax", dict()),
    ("softmax", dict(causal=True, kv_len=[20, 9])),
    ("softmax", dict(bias=BIAS_H, causal=True)),              # one plan per head
    ("softmax", dict(bias_kind="t5", scale=0.5)),
    ("softmax-rope", dict(causal=True, style="half", offset=3)),
    ("softmax", dict(rope="qk", causal=True, xpos=256)),
    ("performer", dict(features=16, causal=True)),
    ("performer-rope-features", dict(features=16)),
    ("performer-rope-qk", dict(features=16, kernel="trig", causal=True)),
    ("linear", dict(causal=True)),
    ("linear-relu", dict(kv_len=[15, 29])),
    ("uniform", dict(causal=True)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant,opts", CASES, ids=[f"{v}-{'-'.join(o)}" for v, o in CASES])
def test_gradients_match_cli(tmp, variant, opts, dtype):
    q, k, v = qkv(dtype, seed=20)
    dout = randn((2, 3, N_Q, D_V), dtype, seed=23)
    try:
        got = ropekit.attend(q, k, v, variant, dout=dout, threads=THREADS, **opts)
    except ropekit.Error as e:
        # a kind without a backward (yet): the command line must refuse it the same way
        assert e.code == ropekit.EUNSUP, e
        with pytest.raises(AssertionError, match=re.escape(e.message)):
            cli_attend(tmp, q, k, v, variant, dout=dout, threads=THREADS, **opts)
        pytest.skip(f"the library has no backward for {variant}: {e.message}")
    want = cli_attend(tmp, q, k, v, variant, dout=dout, threads=THREADS, **opts)
    assert isinstance(got, ropekit.Gradients)
    for name, g, w in zip(got._fields, got, want):
        assert_bits(g, w, f"{variant} {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_gradient_against_numpy(dtype, causal):
    q, k, v = qkv(dtype, seed=24)
    dout = randn((2, 3, N_Q, D_V), dtype, seed=25)
    g = ropekit.attend(q, k, v, "softmax", causal=causal, dout=dout)
    tol = 1e-11 if dtype == np.float64 else 5e-5
    for b in range(2):
        for h in range(3):
            want = ref.softmax_grad(q[b, h], k[b, h], v[b, h], dout[b, h], causal)
            for got, w in zip((g.dq, g.dk, g.dv), want):
                np.testing.assert_allclose(got[b, h], w, rtol=tol, atol=tol)


@pytest.mark.parametrize("variant,opts", [("performer", dict(features=8, causal=True)),
                                          ("linear", dict(map="elu")),
                                          ("performer-rope-features", dict(features=8)),
                                          ("softmax", dict(bias=BIAS_H[:2], rope="qk"))])
def test_gradients_against_finite_differences(variant, opts):
    q, k, v = qkv(np.float64, shape=(2,), n_q=6, n_kv=7, d=4, d_v=3, seed=26, scale=0.5)
    if "bias" in opts:
        opts = dict(opts, bias=opts["bias"][:, :12])
    dout = randn((2, 6, 3), np.float64, seed=27)
    g = grads_or_skip(q, k, v, variant, dout=dout, **opts)

    def loss(q_, k_, v_):
        return np.sum(dout * ropekit.attend(q_, k_, v_, variant, **opts))

    eps = 1e-6
    for which, grad in ((0, g.dq), (1, g.dk), (2, g.dv)):
        args = [q, k, v]
        x = args[which]
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += eps
            xm[idx] -= eps
            args[which] = xp
            fp = loss(*args)
            args[which] = xm
            fm = loss(*args)
            num[idx] = (fp - fm) / (2 * eps)
        args[which] = x
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7, err_msg=f"{variant} {which}")


def test_plan_forward_backward_equals_grad():
    q, k, v = qkv(np.float32, seed=28)
    dout = randn((2, 3, N_Q, D_V), np.float32, seed=29)
    with ropekit.Attention("softmax", n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, batch=2, heads=3,
                           causal=True) as att:
        out, saved = att.forward(q, k, v)
        assert saved.shape == (att.saved_len,) and saved.dtype == np.float32
        assert_bits(out, att(q, k, v), "training forward = execute")
        dq, dk, dv = att.backward(q, k, v, out, saved, dout)
        g = att.grad(q, k, v, dout)
        for a, b in zip((out, dq, dk, dv), g):
            assert_bits(a, b)
        with pytest.raises(ValueError, match="saved"):
            att.backward(q, k, v, out, saved[:-1], dout)
        with pytest.raises(ValueError, match="dtype"):
            att.backward(q, k, v, out, saved.astype(np.float64), dout)


@pytest.mark.parametrize("variant,opts", [("softmax", {}), ("linear", {}),
                                          ("performer", dict(features=16)), ("uniform", {})])
def test_grouped_query_gradients_sum_over_the_group(variant, opts):
    q, k, v = qkv(np.float64, shape=(2, 4), kv_heads=2, seed=30)
    dout = randn((2, 4, N_Q, D_V), np.float64, seed=31)
    g = grads_or_skip(q, k, v, variant, causal=True, dout=dout, **opts)
    e = ropekit.attend(q, np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1), variant,
                       causal=True, dout=dout, **opts)
    assert_bits(g.out, e.out, "out")
    np.testing.assert_allclose(g.dq, e.dq, rtol=1e-13, atol=1e-14)
    for got, full in ((g.dk, e.dk), (g.dv, e.dv)):
        np.testing.assert_allclose(got, full[:, 0::2] + full[:, 1::2], rtol=1e-12, atol=1e-13)


def test_grouped_query_with_a_bias_per_head():
    # one plan per head: the gradients of a key/value head are summed here, in head order
    q, k, v = qkv(np.float64, shape=(1, 4), kv_heads=2, seed=32)
    bias = randn((4, N_Q + N_KV - 1), np.float64, seed=33)
    dout = randn((1, 4, N_Q, D_V), np.float64, seed=34)
    g = ropekit.attend(q, k, v, "softmax", bias=bias, dout=dout)
    for h in range(4):
        np.testing.assert_allclose(g.out[0, h], ref.softmax(q[0, h], k[0, h // 2], v[0, h // 2],
                                                            bias=bias[h]), rtol=1e-12)
    e = ropekit.attend(q, np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1), "softmax",
                       bias=bias, dout=dout)
    np.testing.assert_allclose(g.dk, e.dk[:, 0::2] + e.dk[:, 1::2], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g.dv, e.dv[:, 0::2] + e.dv[:, 1::2], rtol=1e-12, atol=1e-13)


def test_rpe_fft_has_no_backward(tmp):
    q, k, v = qkv(np.float32, shape=(), seed=35)
    dout = randn((N_Q, D_V), np.float32, seed=36)
    with pytest.raises(ropekit.Error) as e:
        ropekit.attend(q, k, v, "rpe-fft", dout=dout)
    assert e.value.code == ropekit.EUNSUP
    for a, name in ((q, "q"), (k, "k"), (v, "v"), (dout, "dout")):
        np.save(tmp / f"{name}.npy", a)
    p = cli(["attend", "--variant", "rpe-fft", "--q", tmp / "q.npy", "--k", tmp / "k.npy",
             "--v", tmp / "v.npy", "--out", tmp / "o.npy", "--dout", tmp / "dout.npy", "--dq",
             tmp / "dq.npy"], check=False)
    assert p.returncode == 2 and e.value.message in p.stderr, (e.value.message, p.stderr)
