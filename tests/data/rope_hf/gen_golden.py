#!/usr/bin/env python3
"""Golden vectors for tests/test_rope_hf.c: the provenance of tests/data/rope_hf/golden.inc.

An independent implementation, in plain Python `math` (float64), of the formulas of Hugging Face
transformers' src/transformers/modeling_rope_utils.py (read for this, not copied; function names
cited per type):
  default  _compute_default_rope_parameters      inv_freq_i = 1 / base^(2i/dim)
  linear   _compute_linear_scaling_rope_parameters  inv_freq_i / factor
  dynamic  _compute_dynamic_ntk_parameters       seq_len = max(seq_len, max_position_embeddings);
           base' = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
  yarn     _compute_yarn_parameters              find_correction_dim / find_correction_range
           (floor/ceil unless truncate is false, clamped to [0, dim - 1]) / linear_ramp_factor
           (over the pair index), get_mscale; factor = max_pos / original when absent
  longrope _compute_longrope_parameters          1 / (ext_factor_i * base^(2i/dim)), long factors
           when seq_len > original_max_position_embeddings; sqrt(1 + ln s / ln original)
  llama3   _compute_llama3_parameters            by wavelength against original / low_freq_factor
           and original / high_freq_factor
and of RotaryEmbeddingConfigMixin.standardize_rope_params (rope_theta, partial_rotary_factor and
original_max_position_embeddings gathered; a top-level original_max_position_embeddings wins).
The model's rotation is HF's apply_rotary_pos_emb: q * cos + rotate_half(q) * sin on the first
`dim` channels (partial rotary: the rest passes), cos and sin times the attention factor; the
DeepSeek-V3 config uses interleaved pairs (apply_rotary_pos_emb_interleave).

HF evaluates inv_freq and the yarn ramp in float32 torch tensors; here everything is float64 (the
formulas, not HF's float32 rounding of them).

Each case: a config.json of this directory (or, for yarn-paper, the YaRN paper's text formula,
which is not an HF type), a sequence length, the r/2 frequencies, the attention factor, and the
rotation of x_j = ((37 j) mod 23 - 11) / 8 (exact in float32) at two positions.

Run from anywhere:  python3 tests/data/rope_hf/gen_golden.py > tests/data/rope_hf/golden.inc
"""
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def hf_params(cfg):
    """The rope dictionary after standardize_rope_params, plus the head and rotary widths."""
    d = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    d = dict(d)
    d.setdefault("rope_type", d.get("type", "default"))
    if d["rope_type"] == "su":
        d["rope_type"] = "longrope"
    d.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    if "partial_rotary_factor" in cfg:
        d.setdefault("partial_rotary_factor", cfg["partial_rotary_factor"])
    if d["rope_type"] in ("llama3", "yarn", "longrope"):
        if "original_max_position_embeddings" in cfg:
            d["original_max_position_embeddings"] = cfg["original_max_position_embeddings"]
        else:
            d.setdefault("original_max_position_embeddings", cfg["max_position_embeddings"])
    head = cfg.get("qk_rope_head_dim") or cfg.get("head_dim") or \
        cfg["hidden_size"] // cfg["num_attention_heads"]
    dim = int(head * d.get("partial_rotary_factor", 1.0))
    return d, head, dim


def default_inv_freq(base, dim):
    return [1.0 / (base ** (i / dim)) for i in range(0, dim, 2)]


def get_mscale(scale, mscale=1):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def inv_freq_and_attention(cfg, seq_len):
    p, head, dim = hf_params(cfg)
    base, kind = p["rope_theta"], p["rope_type"]
    if kind == "default":
        return default_inv_freq(base, dim), 1.0
    if kind == "linear":
        return [f / p["factor"] for f in default_inv_freq(base, dim)], 1.0
    if kind == "dynamic":
        M, factor = cfg["max_position_embeddings"], p["factor"]
        seq = max(seq_len or 0, M)
        base = base * ((factor * seq / M) - (factor - 1)) ** (dim / (dim - 2))
        return default_inv_freq(base, dim), 1.0
    if kind == "yarn":
        L = p["original_max_position_embeddings"]
        factor = p.get("factor")
        if factor is None:
            factor = cfg["max_position_embeddings"] / L
        att = p.get("attention_factor")
        if att is None:
            ms, msa = p.get("mscale"), p.get("mscale_all_dim")
            att = get_mscale(factor, ms) / get_mscale(factor, msa) if ms and msa \
                else get_mscale(factor)
        beta_fast = p.get("beta_fast") or 32
        beta_slow = p.get("beta_slow") or 1

        def correction_dim(rot):
            return (dim * math.log(L / (rot * 2 * math.pi))) / (2 * math.log(base))
        lo, hi = correction_dim(beta_fast), correction_dim(beta_slow)
        if p.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, dim - 1)
        if lo == hi:
            hi += 0.001
        out = []
        for i, f in enumerate(default_inv_freq(base, dim)):
            ramp = min(max((i - lo) / (hi - lo), 0.0), 1.0)
            extrap = 1.0 - ramp
            out.append((f / factor) * (1 - extrap) + f * extrap)
        return out, att
    if kind == "longrope":
        L = p["original_max_position_embeddings"]
        factor = p.get("factor")
        if factor is None:
            factor = cfg["max_position_embeddings"] / L
        att = p.get("attention_factor")
        if att is None:
            att = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(L))
        ext = p["long_factor"] if seq_len and seq_len > L else p["short_factor"]
        return [1.0 / (e * base ** (i / dim)) for e, i in zip(ext, range(0, dim, 2))], att
    if kind == "llama3":
        factor, lo, hi = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
        L = p["original_max_position_embeddings"]
        out = []
        for f in default_inv_freq(base, dim):
            wavelen = 2 * math.pi / f
            if wavelen < L / hi:
                out.append(f)
            elif wavelen > L / lo:
                out.append(f / factor)
            else:
                smooth = (L / wavelen - lo) / (hi - lo)
                out.append((1 - smooth) * f / factor + smooth * f)
        return out, 1.0
    raise ValueError(kind)


def yarn_paper(dim, base, factor, L, beta_fast=32.0, beta_slow=1.0):
    """YaRN paper (arXiv:2309.00071) section 3.2 text: ramp gamma(r) in r = L / lambda."""
    out = []
    for f in default_inv_freq(base, dim):
        r = L / (2 * math.pi / f)
        g = 0.0 if r < beta_slow else 1.0 if r > beta_fast else (r - beta_slow) / (beta_fast - beta_slow)
        out.append((1 - g) * f / factor + g * f)
    return out, (0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)


def rotate(x, rot, inv_freq, att, pos, interleaved):
    """HF's rotation of the first `rot` channels of x at position pos."""
    y = list(x)
    h = rot // 2
    for i, f in enumerate(inv_freq):
        c, s = math.cos(pos * f) * att, math.sin(pos * f) * att
        a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + h)
        y[a] = x[a] * c - x[b] * s
        y[b] = x[b] * c + x[a] * s
    return y


def fmt(v):
    return repr(float(v))


# name, config file ("" for yarn-paper), seq_len, positions, formula note
CASES = [
    ("default_llama2", "default_llama2.json", 0, (3, 1000),
     "default: 1 / 10000^(2i/128)"),
    ("default_partial", "default_partial.json", 0, (3, 1000),
     "default, partial_rotary_factor 0.4 of head 80: 32 rotated channels"),
    ("linear", "linear.json", 0, (3, 5000), "linear: factor 4"),
    ("dynamic_short", "dynamic.json", 1024, (3, 1000),
     "dynamic: seq_len 1024 <= max_position_embeddings 2048: the default frequencies"),
    ("dynamic_at_max", "dynamic.json", 2048, (3, 1000),
     "dynamic: seq_len 2048 = max_position_embeddings: still the default frequencies"),
    ("dynamic_long", "dynamic.json", 8192, (3, 8191),
     "dynamic: seq_len 8192: base 10000 * (2 * 8192 / 2048 - 1)^(128/126)"),
    ("yarn_f4", "yarn_f4.json", 0, (3, 5000), "yarn: factor 4, original 4096 (issue 15)"),
    ("yarn_f16", "yarn_f16.json", 0, (3, 5000),
     "yarn: factor 16, original 2048, rope_parameters with rope_theta inside"),
    ("yarn_deepseek", "yarn_deepseek.json", 0, (3, 100003),
     "yarn: factor from 163840 / 4096 = 40, get_mscale(40, 1.0) / get_mscale(40, 0.8), "
     "qk_rope_head_dim 64, interleaved"),
    ("yarn_notrunc", "yarn_notrunc.json", 0, (3, 100003),
     "yarn: truncate false (fractional ramp ends), base 150000, factor 32, head_dim 64"),
    ("longrope_short", "longrope.json", 4096, (3, 4095),
     "longrope: seq_len 4096 = original: short_factor; attention sqrt(1 + ln 32 / ln 4096)"),
    ("longrope_long", "longrope.json", 4097, (3, 4096),
     "longrope: seq_len 4097 > original 4096: long_factor"),
    ("llama3", "llama3.json", 0, (3, 100003),
     "llama3: base 500000, factor 8, low 1, high 4, original 8192"),
    ("yarn_paper", "", 0, (3, 5000),
     "yarn-paper (not an HF type): ramp in L / wavelength, factor 4, original 4096, head 128"),
]


def main():
    print("/* Generated by tests/data/rope_hf/gen_golden.py (see its docstring for the formulas,")
    print(" * each cited by its transformers function name); do not edit. One entry per case:")
    print(" * config file, seq_len, the r/2 frequencies, the attention factor and the rotation of")
    print(" * x_j = ((37 j) mod 23 - 11) / 8 at two positions. */")
    for name, file, seq_len, positions, note in CASES:
        if file:
            with open(os.path.join(HERE, file)) as f:
                cfg = json.load(f)
            inv, att = inv_freq_and_attention(cfg, seq_len)
            _, head, rot = hf_params(cfg)
            inter = cfg.get("model_type") in ("gptj", "codegen", "deepseek_v2") or \
                (cfg.get("model_type") == "deepseek_v3" and cfg.get("rope_interleave", True))
        else:
            head = rot = 128
            inv, att = yarn_paper(128, 10000.0, 4.0, 4096.0)
            inter = False
        x = [((37 * j) % 23 - 11) / 8.0 for j in range(head)]
        ys = [rotate(x, rot, inv, att, p, inter) for p in positions]
        print("{ /* %s */" % note)
        print('  "%s", "%s", %d, %d, %d, %d, %s,' % (name, file, seq_len, head, rot,
                                                  1 if inter else 0, fmt(att)))
        print("  { %s }," % ", ".join(fmt(v) for v in inv))
        print("  { %d, %d }," % positions)
        for y in ys:
            print("  { %s }," % ", ".join(fmt(v) for v in y))
        print("},")


if __name__ == "__main__":
    main()
