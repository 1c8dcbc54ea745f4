"""ropekit.rope / Rope against `ropekit rope` (bit for bit, same inputs) and against the NumPy
reference; views and strides; in place; positions; the backward; the frequencies against
`ropekit rope --print-freqs`."""
import json

import numpy as np
import pytest

import reference as ref
import ropekit
from conftest import assert_bits, cli, cli_rope, randn

LLAMA3 = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
          "rope_theta": 500000.0, "max_position_embeddings": 1024,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}
LONGROPE = {"model_type": "phi3", "hidden_size": 64, "num_attention_heads": 4,
            "rope_theta": 10000.0, "max_position_embeddings": 128,
            "original_max_position_embeddings": 16,
            "rope_scaling": {"type": "longrope", "short_factor": [1.0 + 0.1 * i for i in range(8)],
                             "long_factor": [1.0 + 0.5 * i for i in range(8)]}}
GPTJ = {"model_type": "gptj", "n_embd": 64, "n_head": 4, "rotary_dim": 8}

CASES = [
    {},
    {"style": "half"},
    {"style": "half", "base": 500000},
    {"rotary_dim": 8},
    {"style": "half", "rotary_dim": 10, "base": 100},
    {"scaling": "linear:4"},
    {"scaling": "ntk:4"},
    {"scaling": "dynamic:2:16"},
    {"scaling": "dynamic:2:16", "seq_len": 100},
    {"scaling": "yarn:4:16"},
    {"scaling": "yarn-paper:4:16"},
    {"scaling": "llama3:8:64:1:4", "style": "half"},
    {"rope_config": LLAMA3},
    {"rope_config": LONGROPE},
    {"rope_config": LONGROPE, "seq_len": 8},
    {"rope_config": GPTJ, "style": "half"},
]
IDS = [",".join(f"{k}={v if k != 'rope_config' else v['model_type']}" for k, v in c.items())
       or "default" for c in CASES]


def cli_args(case, tmp):
    """The case with a rope_config dict written to a file for the command line."""
    case = dict(case)
    if "rope_config" in case:
        path = tmp / "config.json"
        path.write_text(json.dumps(case["rope_config"]))
        case["rope_config"] = str(path)
    return case


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rope_matches_cli(tmp, case, dtype):
    x = randn((2, 3, 20, 16), dtype, seed=1)
    for offset, inverse in ((0, False), (7, True), (-5, False), (1000003, False)):
        want = cli_rope(tmp, x, offset=offset, inverse=inverse, **cli_args(case, tmp))
        got = ropekit.rope(x, offset=offset, inverse=inverse, **case)
        assert_bits(got, want, f"rope {case} offset {offset} inverse {inverse}")


def test_rope_config_path_equals_dict(tmp):
    x = randn((5, 16), np.float64)
    path = tmp / "c.json"
    path.write_text(json.dumps(LONGROPE))
    assert_bits(ropekit.rope(x, rope_config=str(path)), ropekit.rope(x, rope_config=LONGROPE))
    assert_bits(ropekit.rope(x, rope_config=path), ropekit.rope(x, rope_config=LONGROPE))


@pytest.mark.parametrize("shape", [(20, 16), (3, 20, 16), (2, 3, 20, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rope_shapes_match_cli(tmp, shape, dtype):
    x = randn(shape, dtype, seed=2)
    assert_bits(ropekit.rope(x, offset=3, style="half"),
                cli_rope(tmp, x, offset=3, style="half"), f"shape {shape}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bnhd_layout_is_bhnd_transposed(dtype):
    x = randn((2, 20, 3, 16), dtype, seed=3)                 # (b, n, h, d)
    got = ropekit.rope(x, layout="bnhd", offset=11, rotary_dim=12)
    want = ropekit.rope(np.ascontiguousarray(x.transpose(0, 2, 1, 3)), offset=11, rotary_dim=12)
    assert_bits(got, want.transpose(0, 2, 1, 3))
    x3 = x[0]                                                 # (n, h, d)
    assert_bits(ropekit.rope(x3, layout="bnhd"),
                ropekit.rope(np.ascontiguousarray(x3.transpose(1, 0, 2))).transpose(1, 0, 2))


@pytest.mark.parametrize("style", ["interleaved", "half"])
@pytest.mark.parametrize("rotary_dim", [None, 6])
def test_rope_against_numpy(style, rotary_dim):
    x = randn((4, 25, 16), np.float64, seed=4)
    pos = np.arange(25) + 123456
    got = ropekit.rope(x, offset=123456, style=style, base=500.0, rotary_dim=rotary_dim)
    for h in range(4):
        want = ref.rope(x[h], pos, style, 500.0, rotary_dim)
        np.testing.assert_allclose(got[h], want, rtol=1e-13, atol=1e-13)
    got32 = ropekit.rope(x.astype(np.float32), offset=123456, style=style, base=500.0,
                         rotary_dim=rotary_dim)
    np.testing.assert_allclose(got32, got, rtol=2e-6, atol=2e-6)
    back = ropekit.rope(got, offset=123456, style=style, base=500.0, rotary_dim=rotary_dim,
                        inverse=True)
    np.testing.assert_allclose(back, x, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("scaling", ["linear:4", "ntk:4", "yarn:4:16", "llama3:8:32"])
def test_scaled_rope_against_numpy_with_the_plans_frequencies(scaling):
    x = randn((30, 16), np.float64, seed=5)
    with ropekit.Rope(16, scaling=scaling, style="half") as r:
        got = r(x, offset=40)
        want = ref.rope(x, np.arange(30) + 40, "half", freqs=r.freqs, mscale=r.mscale)
        dy = randn((30, 16), np.float64, seed=6)
        dx = r.backward(dy, offset=40)
        # dx = m R^T dy for y = m R x: the transpose of the forward
        np.testing.assert_allclose(np.sum(dx * x), np.sum(dy * got), rtol=1e-12)
        if scaling.startswith("yarn"):
            assert r.mscale > 1.0
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", [c for c in CASES if "seq_len" not in c][:12] +
                         [{"rope_config": LONGROPE, "seq_len": 64}], ids=str)
def test_freqs_match_print_freqs(tmp, case):
    args = cli_args(case, tmp)
    spec = [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
    out = cli(["rope", "--print-freqs", "--dim", "16"] + spec).stdout.splitlines()
    header = out[0]
    rows = [line.split("\t") for line in out[2:]]
    theta = np.array([float(r[1]) for r in rows])
    mscale = float(rows[0][4])
    seq_len = int(header.split("seq_len=")[1].split()[0]) if "seq_len=" in header else None
    opts = dict(case)
    if seq_len is not None and "seq_len" not in opts:
        opts["seq_len"] = seq_len or None
    with ropekit.Rope(16, **opts) as r:
        assert_bits(r.freqs, theta, f"freqs {case}")
        assert r.mscale == mscale


def test_rope_config_and_properties():
    with ropekit.Rope(rope_config=LLAMA3) as r:
        c = r.config
        assert (r.dim, c["dim"], c["rotary_dim"], c["style"], c["scaling"]) == \
            (16, 16, 16, "half", "llama3")
        assert c["base"] == 500000.0 and c["factor"] == 8.0 and c["orig_ctx"] == 64.0
        assert r.nbytes > 0 and r.freqs.shape == (8,)
    with ropekit.Rope(16, freqs=np.linspace(0.1, 1.0, 8)) as r:
        np.testing.assert_array_equal(r.freqs, np.linspace(0.1, 1.0, 8))
        assert r.config["freqs"] == list(np.linspace(0.1, 1.0, 8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_and_strides(dtype):
    big = randn((3, 5, 40, 24), dtype, seed=7)
    view = big[1:, ::2, 3:33, 4:20]            # leading strides, last axis contiguous: no copy
    assert ropekit._arrays.viewable(view) is view
    want = ropekit.rope(np.ascontiguousarray(view), offset=9)
    assert_bits(ropekit.rope(view, offset=9), want, "strided view")
    sparse = big[..., ::2]                      # last axis not contiguous: copied once
    assert ropekit._arrays.viewable(sparse) is not sparse
    assert_bits(ropekit.rope(sparse[:, :, :, :12]),
                ropekit.rope(np.ascontiguousarray(sparse[:, :, :, :12])), "copied view")
    fortran = np.asfortranarray(big[0])
    assert_bits(ropekit.rope(fortran), ropekit.rope(np.ascontiguousarray(big[0])), "fortran")
    rev = big[:, ::-1]                          # negative strides: copied
    assert_bits(ropekit.rope(rev), ropekit.rope(np.ascontiguousarray(rev)), "reversed")


def test_in_place_and_positions():
    x = randn((2, 10, 8), np.float32, seed=8)
    want = ropekit.rope(x, offset=5)
    y = x.copy()
    with ropekit.Rope(8) as r:
        assert r(y, offset=5, out=y) is y
        assert_bits(y, want, "in place")
        assert_bits(r(x, positions=np.arange(10) + 5), want, "positions")
        pos = np.array([3, -2, 7, 7, 1000, 0, 1, 2, 3, 4])
        got = r(x.astype(np.float64), positions=pos)
        for h in range(2):
            np.testing.assert_allclose(got[h], ref.rope(x[h], pos), rtol=1e-12, atol=1e-12)
