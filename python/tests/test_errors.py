"""Bad input: a ValueError before any call for a wrong dtype, shape or option (and the command
line refuses the same option); ropekit.Error carrying the library's message (rk_last_error)
for what the library refuses; plans used after close."""
import json

import numpy as np
import pytest

import ropekit
from conftest import cli, randn
from test_attend import D, D_V, N_KV, N_Q, qkv


def test_error_type():
    assert issubclass(ropekit.Error, RuntimeError)
    e = ropekit.Error(ropekit.EDIM, "q is (1, 1, 2, 3), expected (1, 1, 2, 4)")
    assert (e.code, e.name, e.message) == (2, "EDIM", "q is (1, 1, 2, 3), expected (1, 1, 2, 4)")
    assert "expected (1, 1, 2, 4)" in str(e)


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex64, np.int32, bool])
def test_wrong_dtype_is_a_value_error(dtype):
    q, k, v = qkv(np.float32, shape=())
    bad = q.astype(dtype)
    with pytest.raises(ValueError, match=f"dtype {np.dtype(dtype)} is not supported"):
        ropekit.attend(bad, k, v)
    with pytest.raises(ValueError, match="is not supported"):
        ropekit.rope(bad)
    with ropekit.Attention(n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V) as att:
        with pytest.raises(ValueError, match="is not supported"):
            att(q, k, v.astype(dtype))


def test_mixed_dtypes_and_byte_order():
    q, k, v = qkv(np.float32, shape=())
    with pytest.raises(ValueError, match="share one dtype"):
        ropekit.attend(q, k.astype(np.float64), v)
    with pytest.raises(ValueError, match="share one dtype"):
        ropekit.attend(q, k, v, dout=np.zeros((N_Q, D_V)))
    # big-endian float32 is float32: converted once, the same result
    be = q.astype(">f4")
    assert np.array_equal(ropekit.attend(be, k, v), ropekit.attend(q, k, v))
    assert np.array_equal(ropekit.attend(q.tolist(), k.tolist(), v.tolist()),
                          ropekit.attend(q.astype(np.float64), k.astype(np.float64),
                                         v.astype(np.float64)))


@pytest.mark.parametrize("q_shape,k_shape,v_shape,match", [
    ((16,), (9, 16), (9, 8), "expected"),
    ((1, 1, 1, 4, 16), (1, 1, 1, 9, 16), (1, 1, 1, 9, 8), "expected"),
    ((4, 16), (9, 15), (9, 8), "does not go with"),
    ((4, 16), (9, 16), (8, 8), "does not go with"),
    ((3, 4, 16), (2, 9, 16), (2, 9, 8), "does not go with"),      # 2 kv heads for 3 heads
    ((2, 3, 4, 16), (1, 3, 9, 16), (1, 3, 9, 8), "does not go with"),
    ((0, 16), (9, 16), (9, 8), "n_q and d must be > 0"),
    ((4, 16), (0, 16), (0, 8), "n_kv must be > 0"),
    ((4, 16), (9, 16), (9, 0), "d_v > 0"),
    ((3, 4, 16), (9, 16), (9, 8), "axes"),
])
def test_wrong_shapes_are_value_errors(q_shape, k_shape, v_shape, match):
    with pytest.raises(ValueError, match=match):
        ropekit.attend(np.zeros(q_shape, np.float32), np.zeros(k_shape, np.float32),
                       np.zeros(v_shape, np.float32))


def test_plan_shape_checks():
    q, k, v = qkv(np.float32)
    with ropekit.Attention(n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, batch=2, heads=3) as att:
        with pytest.raises(ValueError, match=r"expects \(b, h, n, d\) = \(2, 3, 21, 16\)"):
            att(q[:, :, 1:], k, v)
        with pytest.raises(ValueError, match="expects"):
            att(q[0], k[0], v[0])                        # batch 2 needs the b axis
        with pytest.raises(ValueError, match="kv_len"):
            att(q, k, v, kv_len=[1, 2, 3])
        with pytest.raises(ValueError, match=r"\[0, n_kv = 29\]"):
            att(q, k, v, kv_len=30)
        with pytest.raises(ValueError, match="out overlaps"):
            att(q, k, v, out=v[:, :, :N_Q])
        with pytest.raises(ValueError, match="out: expected"):
            att(q, k, v, out=np.zeros((2, 3, N_Q, D_V), np.float64))
    with pytest.raises(ValueError, match="kv_heads 2 must divide heads 3"):
        ropekit.Attention(n_q=4, d=8, heads=3, kv_heads=2)
    with pytest.raises(ValueError, match="n_q 0"):
        ropekit.Attention(n_q=0, d=8)
    with ropekit.Rope(8) as r:
        with pytest.raises(ValueError, match="plan's dim is 8"):
            r(np.zeros((3, 10), np.float32))
        with pytest.raises(ValueError, match=r"positions: shape \(2,\), expected \(3,\)"):
            r(np.zeros((3, 8)), positions=[1, 2])
        with pytest.raises(ValueError, match="integer positions"):
            r(np.zeros((3, 8)), positions=[1.0, 2.0, 3.0])


def test_use_after_close():
    q, k, v = qkv(np.float32, shape=())
    att = ropekit.Attention("performer", n_q=N_Q, n_kv=N_KV, d=D, d_v=D_V, causal=True)
    dec = att.decoder()
    att.close()
    att.close()                                           # idempotent
    assert att.closed and dec.closed
    for call in (lambda: att(q, k, v), lambda: att.forward(q, k, v), lambda: att.projection,
                 lambda: att.config, lambda: att.features(q), lambda: att.decoder(),
                 lambda: att.info, lambda: att.nbytes, lambda: dec.step(q[0], k[0], v[0]),
                 lambda: dec.reset(), lambda: att.backward(q, k, v, q, q, q)):
        with pytest.raises(ValueError, match="closed"):
            call()
    with ropekit.Rope(16) as r:
        pass
    for call in (lambda: r(q), lambda: r.freqs, lambda: r.config, lambda: r.backward(q)):
        with pytest.raises(ValueError, match="Rope plan is closed"):
            call()
    with pytest.raises(ValueError, match="closed"):
        with r:
            pass


# Options refused before any call, and the command line refuses the same (exit 2).
BAD_OPTIONS = [
    ("softmax", dict(features=8), ["--features", "8"], "features= applies to"),
    ("softmax", dict(map="relu"), ["--map", "relu"], "map= applies to"),
    ("performer", dict(map="relu"), ["--map", "relu"], "map= applies to"),
    ("performer", dict(bias_kind="t5"), ["--bias-kind", "t5"], "bias_kind= applies to"),
    ("linear", dict(scale=0.5), ["--scale", "0.5"], "scale= applies to"),
    ("linear", dict(seed=3), ["--seed", "3"], "seed= applies to"),
    ("softmax", dict(l2norm=True), ["--l2norm"], "l2norm= applies to"),
    ("performer", dict(xpos=512), ["--xpos", "512"], "xpos= applies to"),
    ("softmax", dict(xpos=512), ["--xpos", "512"], "xpos= needs rope='qk'"),
    ("softmax", dict(rope="qk", xpos=512), ["--rope", "qk", "--xpos", "512"], "needs causal"),
    ("softmax", dict(xpos_gamma=0.5, rope="qk", causal=True),
     ["--xpos-gamma", "0.5", "--rope", "qk", "--causal"], "xpos_gamma= has no effect"),
    ("softmax", dict(rope="features"), ["--rope", "features"], "rotates feature vectors"),
    ("rpe-fft", dict(rope="qk"), ["--rope", "qk"], "rpe-fft does not combine RoPE"),
    ("uniform", dict(rope="qk"), ["--rope", "qk"], "takes no RoPE"),
    ("softmax-rope", dict(rope="none"), ["--rope", "none"], "fixes the rope mode"),
    ("linear-relu", dict(map="elu"), ["--map", "elu"], "fixes the map"),
    ("softmax-t5", dict(bias_kind="alibi"), ["--bias-kind", "alibi"], "fixes the bias to t5"),
    ("softmax", dict(base=500), ["--base", "500"], "has no effect without rope"),
    ("softmax", dict(offset=3), ["--offset", "3"], "offset= has no effect"),
    ("performer", dict(freq_dim="head", rope="qk"), ["--freq-dim", "head", "--rope", "qk"],
     "freq_dim= applies to rope='features' only"),
    ("softmax", dict(scale=0.0), ["--scale", "0"], "scale must be nonzero"),
    ("performer", dict(scale=-1.0), ["--scale", "-1"], "must be > 0"),
    ("performer", dict(seed=0), ["--seed", "0"], "seed 0"),
    ("performer", dict(proj="iid", kernel="cosine"), ["--iid", "--kernel", "cosine"], "kernel"),
    ("softmax", dict(bias_kind="alibi", alibi_slope=-1.0),
     ["--bias-kind", "alibi", "--alibi-slope", "-1"], "alibi_slope -1.0"),
    ("softmax", dict(alibi_slope=0.5), ["--alibi-slope", "0.5"], "alibi_slope= applies to"),
    ("softmax", dict(rope="qk", scaling="yarn:4"), ["--rope", "qk", "--scaling", "yarn:4"],
     "yarn takes 2"),
    ("softmax", dict(rope="qk", scaling="bogus:2"), ["--rope", "qk", "--scaling", "bogus:2"],
     "unknown"),
    ("softmax", dict(rope="qk", style="neox"), ["--rope", "qk", "--style", "neox"], "style"),
    ("softmax", dict(rope="qk", rotary_dim=5), ["--rope", "qk", "--rotary-dim", "5"],
     "rotary_dim 5"),
    ("softmax", dict(rope="qk", base=1), ["--rope", "qk", "--base", "1"], "base 1"),
    ("softmax", dict(rope="qk", seq_len=10), ["--rope", "qk", "--seq-len", "10"],
     "seq_len has no effect"),
    ("softmax", dict(threads=0), ["--threads", "0"], "threads 0"),
    ("bogus", dict(), [], "unknown variant 'bogus'"),
]


@pytest.mark.parametrize("variant,opts,args,match", BAD_OPTIONS,
                         ids=[f"{v}-{'-'.join(o) or 'name'}" for v, o, _, _ in BAD_OPTIONS])
def test_bad_options_are_value_errors_as_on_the_command_line(tmp, variant, opts, args, match):
    q, k, v = qkv(np.float32, shape=())
    with pytest.raises(ValueError, match=match):
        ropekit.attend(q, k, v, variant, **opts)
    for name, a in (("q", q), ("k", k), ("v", v)):
        np.save(tmp / f"{name}.npy", a)
    p = cli(["attend", "--variant", variant, "--q", tmp / "q.npy", "--k", tmp / "k.npy", "--v",
             tmp / "v.npy", "--out", tmp / "o.npy"] + args, check=False)
    assert p.returncode == 2, p.stderr
    assert not (tmp / "o.npy").exists()


def test_other_bad_keywords():
    q, k, v = qkv(np.float32, shape=())
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        ropekit.attend(q, k, v, kernal="trig")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        ropekit.Rope(8, bse=3)
    with pytest.raises(ValueError, match="layout"):
        ropekit.attend(q, k, v, layout="nhd")
    with pytest.raises(ValueError, match="precision"):
        ropekit.attend(q, k, v, precision="half")
    with pytest.raises(ValueError, match="exclude each other"):
        ropekit.attend(q, k, v, bias=np.zeros(N_Q + N_KV - 1), bias_kind="t5")
    with pytest.raises(ValueError, match="no effect with a given projection"):
        ropekit.attend(q, k, v, "performer", proj=np.ones((4, D), np.float32), seed=2)
    with pytest.raises(ValueError, match=r"proj: shape \(4, 3\)"):
        ropekit.attend(q, k, v, "performer", proj=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="conflicts with rope_config"):
        ropekit.rope(q, rope_config={"hidden_size": 16, "num_attention_heads": 1}, base=10)
    with pytest.raises(ValueError, match="odd d = 15"):
        ropekit.rope(np.zeros((3, 15)))
    with pytest.raises(ValueError, match="rotary_dim 18 exceeds d = 16"):
        ropekit.rope(q, rotary_dim=18)
    with pytest.raises(ValueError, match="head width of 32"):
        ropekit.rope(q, rope_config={"hidden_size": 64, "num_attention_heads": 2})
    with pytest.raises(ValueError, match="offset"):
        ropekit.rope(q, offset=2 ** 63)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_bias_must_be_finite_or_minus_inf(tmp, value):
    q, k, v = qkv(np.float32, shape=())
    bias = np.zeros(N_Q + N_KV - 1)
    bias[5] = value
    with pytest.raises(ValueError, match=r"bias: entry \(5\) \(offset -23\) is"):
        ropekit.attend(q, k, v, bias=bias)
    with pytest.raises(ValueError, match=r"bias: 3 values, expected 49"):
        ropekit.attend(q, k, v, bias=np.zeros(3))


def cli_message(tmp, q, k, v, args):
    for name, a in (("q", q), ("k", k), ("v", v)):
        np.save(tmp / f"{name}.npy", a)
    p = cli(["attend", "--q", tmp / "q.npy", "--k", tmp / "k.npy", "--v", tmp / "v.npy",
             "--out", tmp / "o.npy"] + args, check=False)
    assert p.returncode == 2
    return p.stderr


# Refused by the library: ropekit.Error with its code and message, the command line's too.
LIB_ERRORS = [
    ("softmax", dict(bias=np.full(N_Q + N_KV - 1, 1e31)), [], ropekit.EINVAL, "exceeds 1e30"),
    ("softmax", dict(rope="qk", causal=True, xpos=0.1), ["--rope", "qk", "--causal", "--xpos",
                                                         "0.1"], ropekit.EOVERFLOW, "xPos"),
    # the command line checks this one itself (its own words): no comparison of messages
    ("performer", dict(features=7, rope="features"), None, ropekit.EDIM, "even"),
]


@pytest.mark.parametrize("variant,opts,args,code,match", LIB_ERRORS,
                         ids=[e[3] and ropekit.Error(e[3], "").name for e in LIB_ERRORS])
def test_library_errors_carry_its_message(tmp, variant, opts, args, code, match):
    q, k, v = qkv(np.float32, shape=())
    with pytest.raises(ropekit.Error, match=match) as e:
        ropekit.attend(q, k, v, variant, **opts)
    assert e.value.code == code and e.value.message
    if args is None:
        return
    if "bias" in opts:
        np.save(tmp / "b.npy", opts["bias"])
        args = args + ["--bias", str(tmp / "b.npy")]
    stderr = cli_message(tmp, q, k, v, ["--variant", variant] + args)
    assert e.value.message in stderr, (e.value.message, stderr)


def test_nonfinite_input_for_rpe_fft():
    q, k, v = qkv(np.float64, shape=())
    q[3, 2] = np.nan
    with pytest.raises(ropekit.Error) as e:
        ropekit.attend(q, k, v, "rpe-fft")
    assert e.value.code == ropekit.ENONFINITE and e.value.message


@pytest.mark.parametrize("config,code,match", [
    ("{not json", ropekit.EFORMAT, "rope_config"),
    (json.dumps({"hidden_size": 64, "num_attention_heads": 4,
                 "rope_scaling": {"rope_type": "bogus", "factor": 2.0}}), ropekit.EUNSUP,
     "bogus"),
    (json.dumps({"hidden_size": 64, "num_attention_heads": 4, "rope_theta": "x"}),
     ropekit.EFORMAT, "rope_theta"),
])
def test_rope_config_errors(tmp, config, code, match):
    path = tmp / "config.json"
    path.write_text(config)
    with pytest.raises(ropekit.Error, match=match) as e:
        ropekit.Rope(rope_config=str(path))
    assert e.value.code == code
    x = randn((4, 16), np.float32)
    np.save(tmp / "x.npy", x)
    p = cli(["rope", "--in", tmp / "x.npy", "--out", tmp / "y.npy", "--rope-config", path],
            check=False)
    assert p.returncode == 2 and e.value.message in p.stderr, (e.value.message, p.stderr)
    if config.startswith("{\""):
        with pytest.raises(ropekit.Error, match=match):
            ropekit.Rope(rope_config=json.loads(config))


def test_missing_rope_config_file(tmp):
    with pytest.raises(ropekit.Error) as e:
        ropekit.Rope(rope_config=str(tmp / "absent.json"))
    assert e.value.code == ropekit.EIO and "absent.json" in e.value.message
    with pytest.raises(ValueError, match="not JSON"):
        ropekit.Rope(rope_config={"rope_theta": float("nan")})


def test_encodings_errors():
    with pytest.raises(ropekit.Error) as e:
        ropekit.alibi_slopes(0)
    assert e.value.code == ropekit.EINVAL
    with pytest.raises(ropekit.Error):
        ropekit.xpos_zeta(5)
    with pytest.raises(ValueError):
        ropekit.t5_bias(0, 4)
    assert ropekit.bias_len(3, 5) == 7
    assert ropekit.t5_bucket(-3, bidirectional=False) == 3
    np.testing.assert_allclose(ropekit.alibi_slopes(8), 2.0 ** -np.arange(1, 9))
    np.testing.assert_array_equal(ropekit.alibi_bias(2, 3, 0.5), [-1.0, -0.5, 0.0, -0.5])
