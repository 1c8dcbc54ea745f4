"""ropekit.attend / Attention against `ropekit attend` (bit for bit: same inputs, same kernel
path, same thread count) and against NumPy references; the variant table; layouts, grouped-
query attention, views; the projection; plans used many times; features and decoding."""
import json
import re

import numpy as np
import pytest

import reference as ref
import ropekit
from conftest import assert_bits, cli, cli_attend, randn
from test_rope import LLAMA3

THREADS = 2
N_Q, N_KV, D, D_V = 21, 29, 16, 8


def qkv(dtype=np.float32, shape=(2, 3), n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, kv_heads=None,
        seed=0, scale=1.0):
    lead_kv = shape if kv_heads is None else shape[:-1] + (kv_heads,)
    return (randn(shape + (n_q, d), dtype, seed, scale), randn(lead_kv + (n_kv, d), dtype,
                                                                seed + 1, scale),
            randn(lead_kv + (n_kv, d_v), dtype, seed + 2))


def test_variant_table_matches_the_command_line():
    text = cli(["attend", "--help"]).stdout
    block = text.split("Named variants")[1].split("\n\n")[0]
    rows = [re.match(r"\s+(\S+)\s+(.*)$", line) for line in block.splitlines()[1:]]
    table = [(m.group(1), m.group(2)) for m in rows if m]
    assert table == [(v.name, v.summary) for v in ropekit.VARIANTS.values()]
    assert set(ropekit.variant_names()) == set(ropekit.VARIANTS) | {"linear"}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", ropekit.variant_names())
def test_every_variant_matches_cli(tmp, variant, dtype, causal):
    q, k, v = qkv(dtype)
    got = ropekit.attend(q, k, v, variant, causal=causal, threads=THREADS)
    want = cli_attend(tmp, q, k, v, variant, causal=causal, threads=THREADS)
    assert_bits(got, want, variant)


H = 3
L = N_Q + N_KV - 1
BIAS_H = randn((H, L), np.float64, seed=9, scale=0.5)
BIAS_H[1, :4] = -np.inf                      # a mask
OPTION_CASES = [
    ("softmax", dict(scale=0.3)),
    ("softmax", dict(rope="qk", style="half", base=500, rotary_dim=8, offset=5)),
    ("softmax", dict(rope="qk", scaling="yarn:4:16", causal=True)),
    ("softmax", dict(rope="qk", scaling="dynamic:2:16")),
    ("softmax", dict(rope="qk", scaling="dynamic:2:16", seq_len=100)),
    ("softmax", dict(rope="qk", rope_config="LLAMA3", offset=-3)),
    ("softmax", dict(rope="qk", causal=True, xpos=512)),
    ("softmax", dict(rope="qk", causal=True, xpos=64, xpos_gamma=0.2, style="half")),
    ("softmax", dict(bias=BIAS_H[0])),
    ("softmax", dict(bias=BIAS_H, causal=True)),
    ("softmax", dict(bias_kind="alibi")),
    ("softmax", dict(bias_kind="alibi", alibi_slope=0.5, causal=True)),
    ("softmax", dict(bias_kind="t5")),
    ("softmax", dict(kv_len=17, causal=True)),
    ("softmax", dict(kv_len=[3, 29])),
    ("softmax", dict(kv_len=0)),
    ("softmax", dict(sinusoidal=True, offset=7)),
    ("softmax-rope", dict(causal=True, offset=1 << 40)),
    ("softmax-t5", dict(bias_kind="t5", causal=True)),
    ("performer", dict(features=32)),
    ("performer", dict(features=24, kernel="hyperbolic", causal=True)),
    ("performer", dict(features=24, kernel="trig")),
    ("performer", dict(proj="iid", fixed_norm=True, seed=7)),
    ("performer", dict(proj="orthogonal", seed=123456789, scale=0.5)),
    ("performer", dict(proj="PROJ")),
    ("performer", dict(rope="features", freq_dim="head", causal=True, features=32)),
    ("performer", dict(rope="features", features=32, style="half", scaling="linear:2")),
    ("performer", dict(rope="qk", causal=True, features=32, kv_len=[11, 20])),
    ("performer-rope-features", dict(causal=True, features=16, kernel="trig")),
    ("linear", dict(map="relu")),
    ("linear", dict(rope="features", causal=True)),
    ("linear", dict(rope="qk", map="relu", sinusoidal=True)),
    ("linear-relu", dict(map="relu", causal=True)),
    ("rpe-fft", dict(map="relu", causal=True)),
    ("rpe-fft", dict(features=16, kernel="trig", l2norm=True, scale=1.0)),
    ("rpe-fft", dict(bias_kind="alibi", causal=True)),
    ("rpe-fft", dict(bias=BIAS_H[2], features=16)),
    ("rpe-fft", dict(bias=BIAS_H, map="elu")),
    ("rpe-fft", dict(proj="PROJ")),
    ("rpe-fft-linear", dict(causal=True, sinusoidal=True)),
    ("uniform", dict(kv_len=[5, 0], causal=True)),
    ("softmax", dict(precision="float64")),
    ("performer", dict(precision="float64", causal=True, features=16)),
]


def resolve(opts, tmp=None):
    """Placeholders: the LLAMA3 config (a dict for Python, a file for the command line) and a
    projection array."""
    py, cl = dict(opts), dict(opts)
    if opts.get("rope_config") == "LLAMA3":
        path = tmp / "llama3.json"
        path.write_text(json.dumps(LLAMA3))
        py["rope_config"], cl["rope_config"] = LLAMA3, str(path)
    if isinstance(opts.get("proj"), str) and opts["proj"] == "PROJ":
        w = randn((12, D), np.float32, seed=11)
        py["proj"] = cl["proj"] = w
    return py, cl


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant,opts", OPTION_CASES,
                         ids=[f"{v}-{'-'.join(o)}" for v, o in OPTION_CASES])
def test_options_match_cli(tmp, variant, opts, dtype):
    q, k, v = qkv(dtype, seed=3)
    py, cl = resolve(opts, tmp)
    got = ropekit.attend(q, k, v, variant, threads=THREADS, **py)
    want = cli_attend(tmp, q, k, v, variant, threads=THREADS, **cl)
    assert_bits(got, want, f"{variant} {opts}")


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)], ids=["nd", "hnd", "bhnd"])
def test_shapes_match_cli(tmp, shape):
    q, k, v = qkv(np.float32, shape=shape, seed=4)
    for variant in ("softmax", "performer", "rpe-fft"):
        opts = dict(causal=True, threads=THREADS)
        if variant == "softmax" and shape:
            opts["bias_kind"] = "alibi"      # one plan per head where there are heads
        assert_bits(ropekit.attend(q, k, v, variant, **opts),
                    cli_attend(tmp, q, k, v, variant, **opts), f"{variant} {shape}")


@pytest.mark.parametrize("variant", ["softmax", "performer"])
def test_projection_matches_save_proj(tmp, variant):
    q, k, v = qkv(seed=5)
    for opts in (dict(features=20, seed=3), dict(features=8, kernel="trig", proj="iid")):
        name = "rpe-fft" if variant == "softmax" else "performer"   # rpe-fft: its FAVOR+ base
        path = tmp / "w.npy"
        cli_attend(tmp, q, k, v, name, save_proj=str(path), **opts)
        with ropekit.Attention(name, n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, batch=2, heads=3,
                               **opts) as att:
            assert_bits(att.projection, np.load(path), f"{name} projection")
            assert att.projection.dtype == np.float32
    with ropekit.Attention("softmax", n_q=4, d=8) as att:
        assert att.projection is None and att.feature_dim == 0


def test_given_projection_is_used():
    q, k, v = qkv(np.float64, shape=(), seed=6)
    with ropekit.Attention("performer", n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, features=40,
                           seed=5) as a:
        w = a.projection
        out = a(q, k, v)
    assert_bits(ropekit.attend(q, k, v, "performer", proj=w), out, "proj = drawn projection")


# ---- NumPy references ------------------------------------------------------------------------

def per_slice(fn, *arrays):
    """fn on every (n, d) slice of (b, h, n, d) arrays."""
    out = None
    for b in range(arrays[0].shape[0]):
        for h in range(arrays[0].shape[1]):
            r = fn(b, h, *(a[b, h] for a in arrays))
            if out is None:
                out = np.empty(arrays[0].shape[:2] + r.shape)
            out[b, h] = r
    return out


def close(got, want, dtype):
    tol = 1e-11 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_against_numpy(dtype, causal):
    q, k, v = qkv(dtype, seed=7)
    kv_len = [13, 29]
    got = ropekit.attend(q, k, v, bias=BIAS_H, causal=causal, kv_len=kv_len, scale=0.7)
    want = per_slice(lambda b, h, qs, ks, vs: ref.softmax(qs, ks, vs, causal, 0.7, BIAS_H[h],
                                                          kv_len[b]), q, k, v)
    close(got, want, dtype)


@pytest.mark.parametrize("style", ["interleaved", "half"])
def test_softmax_rope_against_numpy(style):
    q, k, v = qkv(np.float64, seed=8)
    P = 100
    got = ropekit.attend(q, k, v, "softmax", rope="qk", style=style, offset=P, causal=True)
    pq = P + N_KV - N_Q + np.arange(N_Q)          # query i at P + n_kv - n_q + i
    pk = P + np.arange(N_KV)
    want = per_slice(lambda b, h, qs, ks, vs: ref.softmax(ref.rope(qs, pq, style),
                                                          ref.rope(ks, pk, style), vs, True),
                     q, k, v)
    close(got, want, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_performer_against_numpy(dtype, causal):
    q, k, v = qkv(dtype, seed=9, scale=0.5)
    with ropekit.Attention("performer", n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, batch=2, heads=3,
                           causal=causal, features=64) as att:
        got = att(q, k, v, kv_len=[29, 10])
        w = att.projection
        assert w.shape == (64, D) and att.feature_dim == 64
        assert att.config["seed"] == ropekit.DEFAULT_SEED
    want = per_slice(lambda b, h, qs, ks, vs: ref.performer(qs, ks, vs, w, causal,
                                                            kv_len=[29, 10][b]), q, k, v)
    close(got, want, dtype)


@pytest.mark.parametrize("kind", ["elu", "relu"])
@pytest.mark.parametrize("causal", [False, True])
def test_linear_and_uniform_against_numpy(kind, causal):
    q, k, v = qkv(np.float64, seed=10)
    got = ropekit.attend(q, k, v, "linear", map=kind, causal=causal)
    close(got, per_slice(lambda b, h, qs, ks, vs: ref.linear(qs, ks, vs, causal, kind),
                         q, k, v), np.float64)
    got = ropekit.attend(q, k, v, "uniform", causal=causal, kv_len=[7, 29])
    close(got, per_slice(lambda b, h, qs, ks, vs: ref.uniform(N_Q, vs, causal, [7, 29][b]),
                         q, k, v), np.float64)


@pytest.mark.parametrize("causal", [False, True])
def test_rpe_fft_against_numpy(causal):
    q, k, v = qkv(np.float64, shape=(3,), seed=11, scale=0.5)
    bias = ropekit.t5_bias(N_Q, N_KV, bidirectional=not causal)
    with ropekit.Attention("rpe-fft", n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, heads=3, causal=causal,
                           features=32) as att:
        got = att(q, k, v)
        w = att.projection
        assert np.array_equal(att.config["bias"][0], bias)
    scale = 1 / np.sqrt(D)
    want = np.stack([ref.rpe(ref.favor_positive(q[h], w, scale), ref.favor_positive(k[h], w, scale),
                             v[h], bias, causal) for h in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    got = ropekit.attend(q, k, v, "rpe-fft", map="relu", causal=causal, bias=bias)
    want = np.stack([ref.rpe(ref.feature_map(q[h], "relu"), ref.feature_map(k[h], "relu"),
                             v[h], bias, causal) for h in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


# ---- layouts, grouped-query attention, views -------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", ["softmax", "performer-rope-qk", "linear-elu-rope-features",
                                     "rpe-fft", "uniform"])
def test_bnhd_layout_is_bhnd_transposed(variant, dtype):
    q, k, v = qkv(dtype, seed=12)
    t = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1, 3))  # noqa: E731
    want = ropekit.attend(q, k, v, variant, causal=True, threads=THREADS)
    got = ropekit.attend(t(q), t(k), t(v), variant, causal=True, layout="bnhd",
                         threads=THREADS)
    assert got.shape == (2, N_Q, 3, D_V)
    assert_bits(got, t(want), f"{variant} bnhd")
    got3 = ropekit.attend(t(q)[1], t(k)[1], t(v)[1], variant, causal=True, layout="bnhd",
                          threads=THREADS)            # (n, h, d)
    assert_bits(got3, t(want)[1], f"{variant} nhd")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", ["softmax", "softmax-rope", "performer", "linear-elu",
                                     "rpe-fft", "uniform"])
@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_equals_repeated_heads(tmp, variant, dtype, kv_heads):
    q, k, v = qkv(dtype, shape=(2, 4), kv_heads=kv_heads, seed=13)
    rep = 4 // kv_heads
    got = ropekit.attend(q, k, v, variant, causal=True, threads=THREADS)
    want = ropekit.attend(q, np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1), variant,
                          causal=True, threads=THREADS)
    assert_bits(got, want, f"{variant} kv_heads={kv_heads}")
    assert_bits(got, cli_attend(tmp, q, k, v, variant, causal=True, threads=THREADS,
                                kv_heads=kv_heads), f"{variant} --kv-heads {kv_heads}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant,opts", [("softmax", dict(bias_kind="alibi", causal=True)),
                                          ("softmax", dict(rope="qk", kv_len=[4, 29])),
                                          ("performer", dict(features=16, sinusoidal=True)),
                                          ("rpe-fft", dict(map="relu"))])
def test_layouts_and_grouped_query_match_cli(tmp, variant, opts, dtype):
    t = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1, 3))  # noqa: E731
    q, k, v = qkv(dtype, shape=(2, 4), kv_heads=2, seed=14)
    for layout in ("bhnd", "bnhd"):
        args = (q, k, v) if layout == "bhnd" else (t(q), t(k), t(v))
        got = ropekit.attend(*args, variant, layout=layout, threads=THREADS, **opts)
        want = cli_attend(tmp, *args, variant, layout=layout, kv_heads=2, threads=THREADS,
                          **opts)
        assert_bits(got, want, f"{variant} {layout} {opts}")
        if variant != "rpe-fft":
            dout = randn(got.shape, dtype, seed=15)
            g = ropekit.attend(*args, variant, layout=layout, threads=THREADS, dout=dout, **opts)
            w = cli_attend(tmp, *args, variant, layout=layout, kv_heads=2, threads=THREADS,
                           dout=dout, **opts)
            for name, a, b in zip(g._fields, g, w):
                assert_bits(a, b, f"{variant} {layout} {name}")


# A per-head bias with grouped K/V runs a plan per query head: the command line adds the dK, dV
# of a group's heads in head order, like the library's batched backward (it once overwrote them).
def test_cli_sums_dk_dv_of_per_head_plans(tmp):
    q, k, v = qkv(np.float64, shape=(1, 4), kv_heads=2, seed=16)
    dout = randn((1, 4, N_Q, D_V), np.float64, seed=17)
    g = ropekit.attend(q, k, v, bias_kind="alibi", dout=dout)
    e = ropekit.attend(q, np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1), bias_kind="alibi",
                       dout=dout)
    np.testing.assert_allclose(g.dk, e.dk[:, 0::2] + e.dk[:, 1::2], rtol=1e-12, atol=1e-13)
    w = cli_attend(tmp, q, k, v, "softmax", bias_kind="alibi", dout=dout, kv_heads=2)
    np.testing.assert_allclose(w[2], g.dk, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_views_give_the_same_bits(dtype):
    big = randn((3, 4, 40, 24), dtype, seed=14)
    q, k, v = big[:2, :3, :N_Q, :D], big[1:, 1:, 5:5 + N_KV, 4:4 + D], big[::2, ::1][:, :3, :N_KV,
                                                                                      :D_V]
    for x in (q, k, v):
        assert not x.flags.c_contiguous and ropekit._arrays.viewable(x) is x
    t = ropekit._arrays.tensor(q, "bhnd")
    assert (t.data, t.sb, t.sh, t.sn) == (q.ctypes.data, 4 * 40 * 24, 40 * 24, 24)
    c = np.ascontiguousarray
    for variant in ("softmax", "performer", "linear", "rpe-fft"):
        assert_bits(ropekit.attend(q, k, v, variant, causal=True),
                    ropekit.attend(c(q), c(k), c(v), variant, causal=True), variant)
    odd = big[:2, :3, :N_Q, ::3][..., :D // 2]            # copied: last axis not contiguous
    assert ropekit._arrays.viewable(odd) is not odd
    assert_bits(ropekit.attend(odd, odd, odd), ropekit.attend(c(odd), c(odd), c(odd)), "copied")


# ---- plans -----------------------------------------------------------------------------------

def test_plan_reuse_out_and_properties():
    q, k, v = qkv(np.float32, seed=15)
    with ropekit.Attention("softmax-rope", n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, batch=2, heads=3,
                           causal=True, threads=THREADS) as att:
        first = att(q, k, v)
        out = np.full_like(first, np.nan)
        assert att(q, k, v, out=out) is out
        assert_bits(out, first, "second call")
        assert_bits(att(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)),
                    ropekit.attend(q.astype(np.float64), k.astype(np.float64),
                                   v.astype(np.float64), "softmax-rope", causal=True), "f64")
        c = att.config
        assert (c["kind"], c["rope"], c["causal"], c["batch"], c["heads"], c["nthreads"]) == \
            ("softmax", "qk", 1, 2, 3, THREADS)
        assert c["scale"] == pytest.approx(1 / np.sqrt(D))
        assert att.info["name"] == "softmax" and "rope_qk" in att.info["fields"]
        assert att.nbytes > 0 and att.saved_len > 0


def test_features_against_numpy():
    x = randn((7, D), np.float64, seed=16, scale=0.5)
    with ropekit.Attention("performer", n_q=4, d=D, features=16, scale=0.25) as att:
        phi = att.features(x)
        np.testing.assert_allclose(phi, ref.favor_positive(x, att.projection, 0.25), rtol=1e-12)
    with ropekit.Attention("linear", n_q=4, d=D, map="relu", rope="features") as att:
        np.testing.assert_allclose(att.features(x), ref.feature_map(x, "relu"), rtol=1e-15)
        pos = np.arange(7) * 3
        np.testing.assert_allclose(att.features(x, positions=pos),
                                   ref.rope(ref.feature_map(x, "relu"), pos), rtol=1e-12,
                                   atol=1e-12)
    with ropekit.Attention("softmax", n_q=4, d=D) as att:
        with pytest.raises(ropekit.Error, match="has no feature map"):
            att.features(x)


@pytest.mark.parametrize("variant", ["performer-rope-features", "linear-elu", "performer-rope-qk"])
def test_decoder_equals_causal_batch(variant):
    q, k, v = qkv(np.float64, shape=(), seed=17, n_q=N_KV)
    offset = 4 if "rope" in variant else None
    with ropekit.Attention(variant, n_q=N_KV, d=D, d_v=D_V, causal=True, offset=offset) as att:
        want = att(q, k, v)
        dec = att.decoder()
        rows = np.stack([dec.step(q[t], k[t], v[t]) for t in range(N_KV)])
        np.testing.assert_allclose(rows, want, rtol=1e-10, atol=1e-12)
        dec.reset()
        np.testing.assert_allclose(dec.step(q, k, v), want, rtol=1e-10, atol=1e-12)
    assert dec.closed          # closing the plan closed its decoder
    with pytest.raises(ValueError, match="closed"):
        dec.step(q[0], k[0], v[0])
