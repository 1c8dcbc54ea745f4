"""Attention: the Attention plan, attend() and the named variants of `ropekit attend`."""
import collections
import ctypes
import os
import weakref

import numpy as np

from . import _arrays, _lib, encodings
from ._plan import Plan
from .rope import LEN_DEPENDENT, ROPE_KEYS, _choice, _number, _offset, free_keep, rope_config
from .rope import scaling_name

# ---- the named variants (experiments/variant.c, and cmd_attend.c's base names) -------------
# name: kind, rope mode, map, rpe-fft feature base, T5 bias by default; the base names (softmax,
# performer, linear, rpe-fft) leave rope (and map) to the keywords, the others fix them.
Variant = collections.namedtuple("Variant", "name kind rope map base t5 summary")
_V = Variant
VARIANTS = collections.OrderedDict((v.name, v) for v in (
    _V("softmax", "softmax", "none", "elu", None, False, "exact softmax attention (eq. 2)"),
    _V("softmax-rope", "softmax", "qk", "elu", None, False,
       "exact softmax attention, RoPE on q and k (eq. 16)"),
    _V("performer", "performer", "none", "elu", None, False,
       "FAVOR+ (positive orthogonal random features)"),
    _V("performer-rope-features", "performer", "features", "elu", None, False,
       "FAVOR+, RoPE on the features, numerator only (eq. 19)"),
    _V("performer-rope-qk", "performer", "qk", "elu", None, False,
       "FAVOR+, RoPE on q and k before the feature map (performer-pytorch)"),
    _V("linear-elu", "linear", "none", "elu", None, False,
       "linear attention, elu(x)+1 features (Katharopoulos et al.)"),
    _V("linear-elu-rope-features", "linear", "features", "elu", None, False,
       "linear attention elu+1, RoPE on the features, numerator only (eq. 19)"),
    _V("linear-elu-rope-qk", "linear", "qk", "elu", None, False,
       "linear attention elu+1, RoPE on q and k before the map"),
    _V("linear-relu", "linear", "none", "relu", None, False, "linear attention, relu features"),
    _V("linear-relu-rope-features", "linear", "features", "relu", None, False,
       "linear attention relu, RoPE on the features, numerator only"),
    _V("softmax-t5", "softmax", "none", "elu", None, True,
       "exact softmax attention with a T5 relative bias (stand-in table)"),
    _V("rpe-fft", "rpe-fft", "none", "elu", "performer", True,
       "FAVOR+ with a T5 relative bias, Toeplitz sums by FFT (Luo et al. 2021)"),
    _V("rpe-fft-linear", "rpe-fft", "none", "elu", "linear", True,
       "elu(x)+1 linear attention with a T5 relative bias by FFT (Luo et al.)"),
    _V("uniform", "uniform", "none", "elu", None, False,
       "every visible key weighs the same: the mean of the values (a baseline)"),
))
BASE_NAMES = ("softmax", "performer", "linear", "rpe-fft")
DEFAULT_SEED = 1          # VARIANT_DEFAULT_SEED: FAVOR+ draws from seed 1 unless told

# Every keyword of Attention / attend beyond the shapes.
ATTN_KEYS = ("causal", "scale", "rope", "offset", "freq_dim", "features", "kernel", "proj",
             "fixed_norm", "seed", "map", "bias", "bias_kind", "alibi_slope", "l2norm",
             "fft_wisdom", "xpos", "xpos_gamma", "sinusoidal", "threads", "isa")
RK_ROPE_KEYS = tuple(k for k in ROPE_KEYS if k != "isa")     # isa is the plan's
KEYS = ATTN_KEYS + RK_ROPE_KEYS
ROPE_OPTS = ("style", "base", "rotary_dim", "scaling", "rope_config", "seq_len", "factor",
             "orig_ctx", "max_pos", "beta_fast", "beta_slow", "attn_factor", "mscale",
             "mscale_all_dim", "truncate", "low_freq_factor", "high_freq_factor", "short_factor",
             "long_factor", "freq_factors", "freqs", "table_len", "freq_dim")

_FAVOR_WHO = "variant performer, or rpe-fft with its FAVOR+ features"
# keyword: (config field group it needs, who takes it)
_GROUP_OF = {
    "features": (_lib.FIELD_PROJ, _FAVOR_WHO), "kernel": (_lib.FIELD_KERNEL, _FAVOR_WHO),
    "proj": (_lib.FIELD_PROJ, _FAVOR_WHO), "fixed_norm": (_lib.FIELD_PROJ, _FAVOR_WHO),
    "seed": (_lib.FIELD_PROJ, _FAVOR_WHO),
    "map": (_lib.FIELD_MAP, "variant linear, or rpe-fft to use elu+1 / relu features"),
    "bias": (_lib.FIELD_BIAS, "variants softmax and rpe-fft"),
    "bias_kind": (_lib.FIELD_BIAS, "variants softmax and rpe-fft"),
    "alibi_slope": (_lib.FIELD_BIAS, "variants softmax and rpe-fft"),
    "l2norm": (_lib.FIELD_FFT, "variant rpe-fft"), "fft_wisdom": (_lib.FIELD_FFT,
                                                                 "variant rpe-fft"),
    "xpos": (_lib.FIELD_XPOS, "variant softmax"), "xpos_gamma": (_lib.FIELD_XPOS,
                                                                "variant softmax"),
    "scale": (_lib.FIELD_SCALE, "variants softmax, performer and rpe-fft with FAVOR+ features"),
}

Gradients = collections.namedtuple("Gradients", "out dq dk dv")
_SIZE_P = ctypes.POINTER(ctypes.c_size_t)


def variant_names():
    """The names attend() takes: the base names and every named variant."""
    return list(BASE_NAMES) + [n for n in VARIANTS if n not in BASE_NAMES]


def _given(opts, key):
    v = opts.get(key)
    return v is not None and v is not False


def _kind_fields(kind, base):
    probe = _lib.AttnConfig(kind=_lib.KIND[kind], rpe_base=_lib.KIND[base] if base else 0)
    return _lib.lib.rk_attn_fields(ctypes.byref(probe))


def _resolve_variant(name, opts):
    """(row, fixed_rope, fixed_map, fixed_bias, base) as cmd_attend.c's get_variant."""
    if not isinstance(name, str) or (name not in VARIANTS and name != "linear"):
        raise ValueError(f"unknown variant {name!r} (expected: softmax, performer, linear, "
                         f"rpe-fft, or one of: {', '.join(VARIANTS)})")
    fixed_rope = fixed_map = True
    fixed_bias = False
    if name in ("softmax", "performer"):
        row, fixed_rope, fixed_map = VARIANTS[name], False, False
    elif name == "linear":
        row, fixed_rope, fixed_map = VARIANTS["linear-elu"], False, False
    elif name == "rpe-fft":
        row, fixed_map = VARIANTS[name], False
    else:
        row = VARIANTS[name]
        fixed_map = row.kind == "linear" or (row.kind == "rpe-fft" and row.base == "linear")
        fixed_bias = row.t5 and row.kind != "rpe-fft"
    base = None
    if row.kind == "rpe-fft":
        base = "linear" if row.base == "linear" or (not fixed_map and _given(opts, "map")) \
            else "performer"
    return row, fixed_rope, fixed_map, fixed_bias, base


class _Built:
    """A config and what must outlive its create calls."""

    def __init__(self):
        self.cfg = _lib.AttnConfig()
        self.keep = []          # buffers the config points into; rk_rope_hf to free
        self.bias_rows = None   # (nb, L) float64: one plan per row (None: no bias)
        self.sinusoidal = False
        self.variant = None
        self.base = None
        self.proj = None        # a given (m, d) float32 projection


def _build(variant, n_q, n_kv, d, d_v, batch, heads, kv_heads, opts):
    """The rk_attn_config of a variant and keywords, as cmd_attend.c's config_from_options."""
    bad = sorted(set(opts) - set(KEYS))
    if bad:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(bad)}")
    row, fixed_rope, fixed_map, fixed_bias, base = _resolve_variant(variant, opts)
    own = _kind_fields(row.kind, base)
    favor = bool(own & _lib.FIELD_PROJ)
    for key, (group, who) in _GROUP_OF.items():
        if _given(opts, key) and not own & group:
            raise ValueError(f"{key}= applies to {who} only (a {row.name} plan does not read "
                             f"it)")
    proj = opts.get("proj")
    proj_given = proj is not None and not isinstance(proj, str)
    if proj_given:
        for k in ("seed", "fixed_norm"):
            if _given(opts, k):
                raise ValueError(f"{k}= has no effect with a given projection (proj= an array: "
                                 f"the projection is given, not drawn)")
    if _given(opts, "bias") and _given(opts, "bias_kind"):
        raise ValueError("bias= and bias_kind= exclude each other (an array, or a standard bias)")
    if fixed_bias and (_given(opts, "bias") or opts.get("bias_kind") not in (None, "t5")):
        raise ValueError(f"{'bias' if _given(opts, 'bias') else 'bias_kind'}=: variant "
                         f"{row.name!r} fixes the bias to t5 (use variant softmax with bias= or "
                         f"bias_kind=)")
    if _given(opts, "xpos_gamma") and not _given(opts, "xpos"):
        raise ValueError("xpos_gamma= has no effect without xpos=")
    if _given(opts, "alibi_slope") and opts.get("bias_kind") != "alibi":
        raise ValueError("alibi_slope= applies to bias_kind='alibi' only")

    b = _Built()
    b.variant, b.base = row.name if variant != "linear" else "linear", base
    c = b.cfg
    c.kind = _lib.KIND[row.kind]
    c.n_q, c.n_kv, c.d, c.d_v = n_q, n_kv, d, d_v
    c.batch, c.heads, c.kv_heads = batch, heads, kv_heads
    c.causal = 1 if opts.get("causal") else 0
    c.rope = _lib.ROPE_MODE[row.rope]
    c.map = _lib.MAP[row.map]
    if row.kind == "rpe-fft":
        c.rpe_base = _lib.KIND[base]
    if favor:                       # the paper's FAVOR+ settings, seed 1 unless told
        c.kernel, c.proj, c.proj_norm = 0, 0, 0
        if opts.get("features") is not None:
            m = _number(opts["features"], "features", integer=True)
            if not 1 <= m <= (1 << 30):
                raise ValueError(f"features {m}: expected 1 .. 2^30 random features")
            c.n_features = m
        seed = opts.get("seed")
        if seed is None:
            seed = DEFAULT_SEED
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or \
                not 1 <= seed < (1 << (8 * ctypes.sizeof(ctypes.c_ulong))):
            raise ValueError(f"seed {seed!r}: expected an integer >= 1")
        c.seed = int(seed)
    if opts.get("scale") is not None:
        s = _number(opts["scale"], "scale")
        if s == 0:
            raise ValueError("scale must be nonzero (0 would mean the default)")
        if favor and s < 0:
            raise ValueError(f"scale {s} must be > 0 for FAVOR+ features (they use sqrt(scale))")
        c.scale = s
    # RoPE
    mode = opts.get("rope")
    if mode is not None:
        want = _choice(mode, _lib.ROPE_MODE, "rope mode")
        need = {1: _lib.FIELD_ROPE_QK, 2: _lib.FIELD_ROPE_FEATURES}.get(want, 0)
        if need and not own & need:
            if own & _lib.FIELD_FFT:
                raise ValueError(f"rope={mode!r}: rpe-fft does not combine RoPE with the FFT "
                                 f"relative bias (use sinusoidal=True, or variant softmax, "
                                 f"performer or linear with rope=)")
            if want == 2 and own & _lib.FIELD_ROPE_QK:
                raise ValueError(f"rope='features' rotates feature vectors: use variant "
                                 f"performer or linear ({row.name} takes rope='qk')")
            raise ValueError(f"rope={mode!r}: variant {row.name!r} takes no RoPE")
        if fixed_rope and want != c.rope:
            raise ValueError(f"rope={mode!r}: variant {row.name!r} fixes the rope mode to "
                             f"{row.rope!r} (use variant {row.kind!r} with rope=)")
        c.rope = want
    if c.rope == 0:
        for k in ROPE_OPTS:
            if opts.get(k) is not None:
                raise ValueError(f"{k}= has no effect without rope= ('qk' or 'features')")
        if opts.get("offset") not in (None, 0) and not opts.get("sinusoidal"):
            raise ValueError("offset= has no effect without rope= or sinusoidal=True")
    if opts.get("freq_dim") is not None:
        if c.rope != 2:
            raise ValueError("freq_dim= applies to rope='features' only")
        c.rope_freq_dim_head = _choice(opts["freq_dim"], {"features": 0, "head": 1}, "freq_dim")
    c.pos_offset = _offset(opts.get("offset") or 0)
    try:
        rope_opts = {k: opts.get(k) for k in RK_ROPE_KEYS}
        if c.rope:
            rc = rope_config(0, rope_opts, b.keep, what="q")
            if c.rope == 1 and rc.dim and rc.dim != d:
                raise ValueError(f"q has d = {d}, but rope_config gives a head width of "
                                 f"{rc.dim}")
            dependent = scaling_name(rc) in LEN_DEPENDENT
            if opts.get("seq_len") is not None and not dependent:
                raise ValueError(f"seq_len has no effect with scaling {scaling_name(rc)} (only "
                                 f"dynamic and longrope depend on the length)")
            if opts.get("seq_len") is None and dependent:
                end = c.pos_offset + n_kv
                rc.seq_len = end if end > 0 else 0
            c.rope_cfg = rc
        # the feature options
        if own & _lib.FIELD_KERNEL and opts.get("kernel") is not None:
            c.kernel = _choice(opts["kernel"], _lib.KERNEL, "kernel")
        if own & _lib.FIELD_PROJ:
            if isinstance(proj, str):
                c.proj = _choice(proj, _lib.PROJ, "proj")
            elif proj_given:
                w = _arrays.as_float(proj, "proj")
                if w.ndim != 2 or w.shape[1] != d or w.shape[0] == 0:
                    raise ValueError(f"proj: shape {w.shape}, expected (m, {d}): m rows of the "
                                     f"head width d")
                if not np.isfinite(w).all():
                    raise ValueError("proj: the projection must be finite")
                w = np.ascontiguousarray(w, dtype=np.float32)
                if opts.get("features") is not None and opts["features"] != w.shape[0]:
                    raise ValueError(f"features={opts['features']} but proj has m = "
                                     f"{w.shape[0]} rows")
                b.keep.append(w)
                b.proj = w
                c.proj_data = w.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                c.n_features = w.shape[0]
            if opts.get("fixed_norm"):
                c.proj_norm = _lib.NORM["fixed"]
        if own & _lib.FIELD_MAP and opts.get("map") is not None:
            want = _choice(opts["map"], _lib.MAP, "map")
            if fixed_map and want != c.map:
                raise ValueError(f"map={opts['map']!r}: variant {row.name!r} fixes the map to "
                                 f"{row.map!r} (use variant "
                                 f"{'rpe-fft' if row.kind == 'rpe-fft' else 'linear'} with "
                                 f"map=)")
            c.map = want
        if own & _lib.FIELD_FFT:
            c.rpe_l2norm = 1 if opts.get("l2norm") else 0
            if opts.get("fft_wisdom") is not None:
                wis = os.fsencode(opts["fft_wisdom"])
                b.keep.append(wis)
                c.fft_wisdom = wis
        if _given(opts, "xpos"):
            if c.rope != 1:
                raise ValueError("xpos= needs rope='qk' (xPos is RoPE with a decay; or variant "
                                 "softmax-rope)")
            if not c.causal:
                raise ValueError("xpos= needs causal=True (its factors grow without bound for "
                                 "keys after the query)")
            c.xpos_scale_base = _number(opts["xpos"], "xpos", positive=True)
            if opts.get("xpos_gamma") is not None:
                c.xpos_gamma = _number(opts["xpos_gamma"], "xpos_gamma", positive=True)
        if opts.get("threads") is not None:
            t = _number(opts["threads"], "threads", integer=True)
            if not 1 <= t <= 4096:
                raise ValueError(f"threads {t}: expected 1 .. 4096")
            c.nthreads = t
        if opts.get("isa") is not None:
            c.isa = _choice(opts["isa"], _lib.ISA, "isa")
        b.sinusoidal = bool(opts.get("sinusoidal"))
        if b.sinusoidal and c.pos_offset < -(1 << 63) + n_q:
            raise ValueError(f"offset {c.pos_offset}: the first query position overflows int64")
        # the bias rows: none, one for every head, or one per head
        kind = opts.get("bias_kind")
        if kind is not None:
            _choice(kind, {"none": 0, "t5": 1, "alibi": 2}, "bias_kind")
        L = n_q + n_kv - 1
        if _given(opts, "bias"):
            b.bias_rows = _bias_array(opts["bias"], n_q, n_kv, heads)
        elif kind == "alibi":
            if opts.get("alibi_slope") is not None:
                s = _number(opts["alibi_slope"], "alibi_slope")
                if s < 0:
                    raise ValueError(f"alibi_slope {s}: must be >= 0")
                b.bias_rows = encodings.alibi_bias(n_q, n_kv, s)[None, :]
            else:
                slopes = encodings.alibi_slopes(heads)
                b.bias_rows = np.stack([encodings.alibi_bias(n_q, n_kv, s) for s in slopes])
        elif kind == "t5" or (kind is None and row.t5):
            b.bias_rows = encodings.t5_bias(n_q, n_kv, bidirectional=not c.causal)[None, :]
        if b.bias_rows is not None:
            b.bias_rows = np.ascontiguousarray(b.bias_rows, dtype=np.float64)
            assert b.bias_rows.shape[1] == L
    except BaseException:
        free_keep(b.keep)
        raise
    return b


def _bias_array(bias, n_q, n_kv, heads):
    a = _arrays.as_float(bias, "bias")
    L = n_q + n_kv - 1
    if a.ndim == 1 and a.shape[0] != L:
        raise ValueError(f"bias: {a.shape[0]} values, expected {L} = n_q + n_kv - 1 for n_q = "
                         f"{n_q}, n_kv = {n_kv} (offsets -{n_kv - 1} .. {n_q - 1}, most negative "
                         f"first)")
    if a.ndim == 2 and a.shape != (heads, L):
        raise ValueError(f"bias: shape {a.shape}, expected ({heads}, {L}): one row per head of "
                         f"n_q + n_kv - 1 = {L} values (or a 1-D ({L},) for every head)")
    if a.ndim not in (1, 2):
        raise ValueError(f"bias: shape {a.shape}, expected ({L},) or ({heads}, {L})")
    a = np.atleast_2d(a).astype(np.float64)
    bad = np.isnan(a) | (a == np.inf)
    if bad.any():
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        where = f"({i[1]})" if a.shape[0] == 1 and np.ndim(bias) == 1 else f"{i}"
        raise ValueError(f"bias: entry {where} (offset {i[1] - (n_kv - 1)}) is "
                         f"{'NaN' if np.isnan(a[i]) else '+Inf'}; bias entries must be finite or "
                         f"-inf")
    return a


def _kv_len_array(kv_len, batch, n_kv):
    """NULL (None) or a size_t array of batch values."""
    if kv_len is None:
        return None, None
    vals = np.atleast_1d(np.asarray(kv_len))
    if vals.dtype.kind not in "iu" or vals.ndim != 1:
        raise ValueError(f"kv_len {kv_len!r}: expected an integer or one integer per batch entry")
    if vals.shape[0] == 1:
        vals = np.repeat(vals, batch)
    if vals.shape[0] != batch:
        raise ValueError(f"kv_len has {vals.shape[0]} values but the batch has {batch} "
                         f"entr{'y' if batch == 1 else 'ies'} (give one value, or one per b)")
    if (vals < 0).any() or (vals > n_kv).any():
        raise ValueError(f"kv_len {kv_len!r}: every value must lie in [0, n_kv = {n_kv}]")
    a = np.ascontiguousarray(vals, dtype=np.uintp)
    return a, a.ctypes.data_as(_SIZE_P)


class Attention(Plan):
    """An attention plan for fixed shapes: create once, call many times.

        with Attention("performer", n_q=n, d=64, heads=8, causal=True, features=256) as att:
            out = att(q, k, v)                    # q (8, n, 64) or (b, 8, n, 64)
            out, saved = att.forward(q, k, v)     # training forward, then
            dq, dk, dv = att.backward(q, k, v, out, saved, dout)
            w = att.projection                    # the (m, d) FAVOR+ projection

    Shapes: n_q, d (required), n_kv (default n_q), d_v (default d), batch, heads (default 1),
    kv_heads (default heads; fewer: grouped-query attention, query head h uses key/value head
    h // (heads // kv_heads)), layout ('bhnd': arrays (b, h, n, d), (h, n, d), (n, d); 'bnhd':
    (b, n, h, d), (n, h, d), (n, d)). Arrays may be float32 or float64 (the computation follows
    their dtype). Keywords: those of attend(), except precision, kv_len and dout."""

    _destroy = "rk_attn_destroy"

    def __init__(self, variant="softmax", *, n_q, d, n_kv=None, d_v=None, batch=1, heads=1,
                 kv_heads=None, layout="bhnd", **opts):
        super().__init__()
        self._decoders = weakref.WeakSet()
        self._proj_plan = None
        n_kv = n_q if n_kv is None else n_kv
        d_v = d if d_v is None else d_v
        kv_heads = heads if kv_heads is None else kv_heads
        for name, v in (("n_q", n_q), ("d", d), ("n_kv", n_kv), ("d_v", d_v), ("batch", batch),
                        ("heads", heads), ("kv_heads", kv_heads)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} {v!r}: expected an integer >= 1")
        if heads % kv_heads:
            raise ValueError(f"kv_heads {kv_heads} must divide heads {heads}")
        _arrays.axes(2, layout)
        self.layout = layout
        self.shape = dict(batch=int(batch), heads=int(heads), kv_heads=int(kv_heads),
                          n_q=int(n_q), n_kv=int(n_kv), d=int(d), d_v=int(d_v))
        bu = _build(variant, int(n_q), int(n_kv), int(d), int(d_v), int(batch), int(heads),
                    int(kv_heads), opts)
        self.variant = bu.variant
        self._sinusoidal = bu.sinusoidal
        self._given_proj = bu.proj          # proj_data of the plans (rpe-fft's projection plan)
        try:
            c = bu.cfg
            rows = bu.bias_rows
            if rows is not None and rows.shape[0] > 1:
                # one plan per head (a plan copies one bias): heads 1, the batch as given
                c.heads = c.kv_heads = 1
            nplans = 1 if rows is None else rows.shape[0]
            for i in range(nplans):
                if rows is not None:
                    c.bias = rows[i].ctypes.data_as(ctypes.POINTER(ctypes.c_double))
                    c.bias_len = rows.shape[1]
                h = ctypes.c_void_p()
                _lib.check(_lib.lib.rk_attn_create(ctypes.byref(h), ctypes.byref(c)))
                self._handles.append(h.value)
            self._bias = rows                # (the plans copied it; kept for config)
        except BaseException:
            self._closed = True
            self._release()
            raise
        finally:
            free_keep(bu.keep)
        self._per_head = len(self._handles) > 1
        self._saved_per_plan = [_lib.lib.rk_attn_saved_len(h) for h in self._handles]

    # ---- lifetime -------------------------------------------------------------------------
    def _release(self):
        for dec in list(getattr(self, "_decoders", ())):
            dec.close()
        if getattr(self, "_proj_plan", None):
            _lib.lib.rk_attn_destroy(self._proj_plan)
            self._proj_plan = None
        super()._release()

    # ---- what the plan resolved -----------------------------------------------------------
    @property
    def config(self):
        """The resolved rk_attn_config as a dict (enums by name; bias as its length)."""
        self._check_open()
        g = _lib.lib.rk_attn_get_config(self._handles[0]).contents
        d = _lib.struct_dict(g)
        inv = {k: {v: n for n, v in t.items()} for k, t in (
            ("kind", _lib.KIND), ("rope", _lib.ROPE_MODE), ("kernel", _lib.KERNEL),
            ("map", _lib.MAP), ("proj", _lib.PROJ), ("proj_norm", _lib.NORM))}
        for k, t in inv.items():
            d[k] = t.get(d[k], d[k])
        d["rpe_base"] = {v: n for n, v in _lib.KIND.items()}.get(g.rpe_base)
        d["isa"] = _lib.lib.rk_isa_name(g.isa).decode()
        d["variant"] = self.variant
        d["heads"], d["kv_heads"] = self.shape["heads"], self.shape["kv_heads"]
        r = _lib.struct_dict(g.rope_cfg)
        r["style"] = "half" if g.rope_cfg.style == 1 else "interleaved"
        r["scaling"] = scaling_name(g.rope_cfg)
        d["rope_cfg"] = r
        d["fft_wisdom"] = os.fsdecode(g.fft_wisdom) if g.fft_wisdom else None
        d["bias"] = None if self._bias is None else self._bias.copy()
        return d

    @property
    def info(self):
        """name, fields (the config field groups this plan reads), feature_dim, fft_len."""
        self._check_open()
        i = _lib.lib.rk_attn_get_info(self._handles[0]).contents
        return dict(name=i.name.decode(), fields=sorted(n for f, n in _lib.FIELD_NAMES.items()
                                                        if i.fields & f),
                    feature_dim=i.feature_dim, fft_len=i.fft_len)

    @property
    def feature_dim(self):
        """F, the width of the plan's feature map (0 for kinds without one)."""
        self._check_open()
        return _lib.lib.rk_attn_feature_dim(self._handles[0])

    @property
    def nbytes(self):
        """Working memory of the plan(s) (rk_attn_bytes)."""
        self._check_open()
        return sum(_lib.lib.rk_attn_bytes(h) for h in self._handles)

    @property
    def saved_len(self):
        """Elements forward() saves for backward() (all heads)."""
        self._check_open()
        return sum(self._saved_per_plan)

    @property
    def projection(self):
        """The (m, d) float32 FAVOR+ projection the plan uses (a copy), or None for kinds
        without a random projection. rpe-fft with FAVOR+ features: the projection a performer
        plan of the same options draws (the same one, as `ropekit attend --save-proj`)."""
        with self._using():
            h = self._handles[0]
            if self._kind() == "rpe-fft" and self._uses_favor():
                if not self._proj_plan:
                    self._proj_plan = self._make_proj_plan()
                h = self._proj_plan
            m, d = ctypes.c_size_t(), ctypes.c_size_t()
            p = _lib.lib.rk_attn_proj(h, ctypes.byref(m), ctypes.byref(d))
            if not p:
                return None
            return np.ctypeslib.as_array(p, shape=(m.value, d.value)).copy()

    def _kind(self):
        return {v: n for n, v in _lib.KIND.items()}[
            _lib.lib.rk_attn_get_config(self._handles[0]).contents.kind]

    def _uses_favor(self):
        return bool(_lib.lib.rk_attn_get_info(self._handles[0]).contents.fields &
                    _lib.FIELD_PROJ)

    def _make_proj_plan(self):
        g = _lib.lib.rk_attn_get_config(self._handles[0]).contents
        pc = _lib.AttnConfig(kind=_lib.KIND["performer"], n_q=1, n_kv=1, d=g.d, d_v=1,
                             scale=g.scale, n_features=g.n_features, kernel=g.kernel,
                             proj=g.proj, proj_norm=g.proj_norm, seed=g.seed, nthreads=1)
        if self._given_proj is not None:
            pc.proj_data = self._given_proj.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        h = ctypes.c_void_p()
        _lib.check(_lib.lib.rk_attn_create(ctypes.byref(h), ctypes.byref(pc)))
        return h.value

    # ---- arrays ---------------------------------------------------------------------------
    def _views(self, named, dtype=None):
        """Check and view the arrays [(name, array, 'q' | 'kv', width)]: returns arrays
        (viewable), tensors, the common dtype and ndim."""
        s = self.shape
        arrays, tensors = [], []
        ndim = None
        for name, x, role, width in named:
            x = _arrays.as_float(x, name, dtype)
            dtype = x.dtype
            if ndim is None:
                ndim = x.ndim
            elif x.ndim != ndim:
                raise ValueError(f"{name}: {x.ndim} axes, but q has {ndim} (every array of a "
                                 f"call has the same axes)")
            b, h, n, d = _arrays.dims(x, self.layout, name)
            want = (s["batch"], s["kv_heads"] if role == "kv" else s["heads"],
                    s["n_kv"] if role == "kv" else s["n_q"], width)
            if (b, h, n, d) != want or (x.ndim < 4 and s["batch"] != 1) or \
                    (x.ndim < 3 and want[1] != 1):
                raise ValueError(f"{name}: shape {x.shape} is {self._shape_str(b, h, n, d)}, "
                                 f"but the plan expects {self._shape_str(*want)}")
            x = _arrays.viewable(x)
            arrays.append(x)
            tensors.append(_arrays.tensor(x, self.layout))
        return arrays, tensors, dtype, ndim

    def _shape_str(self, b, h, n, d):
        return f"(b, h, n, d) = ({b}, {h}, {n}, {d})"

    def _new(self, role, width, dtype, ndim):
        s = self.shape
        h = s["kv_heads"] if role == "kv" else s["heads"]
        n = s["n_kv"] if role == "kv" else s["n_q"]
        x = _arrays.empty((s["batch"], h, n, width), self.layout, ndim, dtype)
        return x, _arrays.tensor(x, self.layout)

    def _qkv(self, q, k, v, extra=(), dtype=None):
        s = self.shape
        named = [("q", q, "q", s["d"]), ("k", k, "kv", s["d"]), ("v", v, "kv", s["d_v"])]
        arrays, tensors, dtype, ndim = self._views(named + list(extra), dtype)
        if self._sinusoidal:
            # the encoding on copies of q and k: key j at P + j, query i at P + n_kv - n_q + i
            P = _lib.lib.rk_attn_get_config(self._handles[0]).contents.pos_offset
            for i, pos0 in ((0, P + s["n_kv"] - s["n_q"]), (1, P)):
                x = np.array(arrays[i], order="C", copy=True)
                encodings.add_sinusoidal(x, pos0, 0.0, self.layout)
                arrays[i] = x
                tensors[i] = _arrays.tensor(x, self.layout)
        return arrays, tensors, dtype, ndim

    def _check_out(self, out, role, width, dtype, ndim, inputs):
        s = self.shape
        h = s["kv_heads"] if role == "kv" else s["heads"]
        n = s["n_kv"] if role == "kv" else s["n_q"]
        ref = _arrays.empty((s["batch"], h, n, width), self.layout, ndim, dtype)
        if not isinstance(out, np.ndarray) or out.shape != ref.shape or out.dtype != dtype:
            raise ValueError(f"out: expected an array of shape {ref.shape} and dtype {dtype}")
        if not out.flags.writeable or not _arrays.is_view(out):
            raise ValueError("out: must be writeable with its last axis contiguous")
        for x in inputs:
            if np.shares_memory(out, x):
                raise ValueError("out overlaps an input")
        return out, _arrays.tensor(out, self.layout)

    # the tensor of head h of the per-head plans: (b, 1, n, d) at head h
    @staticmethod
    def _head(t, x, h):
        return _lib.Tensor(t.data + h * t.sh * x.itemsize, t.b, 1, t.n, t.d, t.sb, 0, t.sn)

    def _kv_head(self, h):
        return h // (self.shape["heads"] // self.shape["kv_heads"])

    # ---- execute ----------------------------------------------------------------------------
    def __call__(self, q, k, v, kv_len=None, out=None):
        """The attention output (a new array in q's layout and dtype, or out). kv_len: None
        (every key), one count for every batch entry, or one per entry."""
        self._check_open()
        (qa, ka, va), (tq, tk, tv), dtype, ndim = self._qkv(q, k, v)
        if out is None:
            out, to = self._new("q", self.shape["d_v"], dtype, ndim)
        else:
            out, to = self._check_out(out, "q", self.shape["d_v"], dtype, ndim, (qa, ka, va))
        kl, klp = _kv_len_array(kv_len, self.shape["batch"], self.shape["n_kv"])
        f64 = dtype == np.float64
        fn = _lib.lib.rk_attn_execute_batch_d if f64 else _lib.lib.rk_attn_execute_batch
        with self._using():
            if not self._per_head:
                _lib.check(fn(self._handles[0], ctypes.byref(tq), ctypes.byref(tk),
                              ctypes.byref(tv), ctypes.byref(to), klp))
            else:
                for h, plan in enumerate(self._handles):
                    g = self._kv_head(h)
                    _lib.check(fn(plan, ctypes.byref(self._head(tq, qa, h)),
                                  ctypes.byref(self._head(tk, ka, g)),
                                  ctypes.byref(self._head(tv, va, g)),
                                  ctypes.byref(self._head(to, out, h)), klp))
        return out

    execute = __call__

    def forward(self, q, k, v, kv_len=None):
        """The training forward: (out, saved), saved what backward() needs (a 1-D array of
        saved_len elements in q's dtype; may be empty)."""
        self._check_open()
        (qa, ka, va), (tq, tk, tv), dtype, ndim = self._qkv(q, k, v)
        out, to = self._new("q", self.shape["d_v"], dtype, ndim)
        kl, klp = _kv_len_array(kv_len, self.shape["batch"], self.shape["n_kv"])
        saved = np.zeros(max(self.saved_len, 1), dtype=dtype)
        f64 = dtype == np.float64
        fn = _lib.lib.rk_attn_forward_batch_d if f64 else _lib.lib.rk_attn_forward_batch
        with self._using():
            if not self._per_head:
                _lib.check(fn(self._handles[0], ctypes.byref(tq), ctypes.byref(tk),
                              ctypes.byref(tv), ctypes.byref(to), klp, saved.ctypes.data))
            else:
                off = 0
                for h, plan in enumerate(self._handles):
                    g = self._kv_head(h)
                    _lib.check(fn(plan, ctypes.byref(self._head(tq, qa, h)),
                                  ctypes.byref(self._head(tk, ka, g)),
                                  ctypes.byref(self._head(tv, va, g)),
                                  ctypes.byref(self._head(to, out, h)), klp,
                                  saved.ctypes.data + off * saved.itemsize))
                    off += self._saved_per_plan[h]
        return out, saved[:self.saved_len]

    def backward(self, q, k, v, out, saved, dout, kv_len=None):
        """dq, dk, dv: the gradients of sum(dout * out) for the out and saved forward()
        returned on these q, k, v and kv_len (new arrays shaped as q, k, v)."""
        self._check_open()
        s = self.shape
        extra = [("out", out, "q", s["d_v"]), ("dout", dout, "q", s["d_v"])]
        arrays, tensors, dtype, ndim = self._qkv(q, k, v, extra)
        qa, ka, va, oa, ga = arrays
        tq, tk, tv, to, tg = tensors
        sv = _arrays.as_float(saved, "saved", dtype)
        if sv.ndim != 1 or sv.shape[0] != self.saved_len:
            raise ValueError(f"saved: shape {sv.shape}, expected ({self.saved_len},): what "
                             f"forward() returned")
        sv = np.ascontiguousarray(sv) if sv.size else np.zeros(1, dtype)
        dq, tdq = self._new("q", s["d"], dtype, ndim)
        dk, tdk = self._new("kv", s["d"], dtype, ndim)
        dv, tdv = self._new("kv", s["d_v"], dtype, ndim)
        kl, klp = _kv_len_array(kv_len, s["batch"], s["n_kv"])
        f64 = dtype == np.float64
        fn = _lib.lib.rk_attn_backward_batch_d if f64 else _lib.lib.rk_attn_backward_batch
        B = ctypes.byref
        with self._using():
            if not self._per_head:
                _lib.check(fn(self._handles[0], B(tq), B(tk), B(tv), B(to), sv.ctypes.data,
                              B(tg), B(tdq), B(tdk), B(tdv), klp))
            else:
                # one plan per head: dk, dv of a key/value head sum over its query heads, in
                # head order (as the library sums a group)
                off = 0
                grp = s["heads"] // s["kv_heads"]
                tmpk, ttk = self._new("kv", s["d"], dtype, ndim)
                tmpv, ttv = self._new("kv", s["d_v"], dtype, ndim)
                for h, plan in enumerate(self._handles):
                    g = self._kv_head(h)
                    first = h % grp == 0
                    hk = self._head(tdk, dk, g) if first else self._head(ttk, tmpk, 0)
                    hv = self._head(tdv, dv, g) if first else self._head(ttv, tmpv, 0)
                    _lib.check(fn(plan, B(self._head(tq, qa, h)), B(self._head(tk, ka, g)),
                                  B(self._head(tv, va, g)), B(self._head(to, oa, h)),
                                  sv.ctypes.data + off * sv.itemsize, B(self._head(tg, ga, h)),
                                  B(self._head(tdq, dq, h)), B(hk), B(hv), klp))
                    off += self._saved_per_plan[h]
                    if not first:
                        self._head_view(dk, g)[...] += self._head_view(tmpk, 0)
                        self._head_view(dv, g)[...] += self._head_view(tmpv, 0)
        return dq, dk, dv

    def _head_view(self, x, h):
        """Key/value head h of an array in the plan's layout, as a NumPy view."""
        ax = _arrays.axes(x.ndim, self.layout)[1]
        return x if ax is None else x[(slice(None),) * ax + (slice(h, h + 1),)]

    def grad(self, q, k, v, dout, kv_len=None):
        """forward() then backward(): Gradients(out, dq, dk, dv)."""
        out, saved = self.forward(q, k, v, kv_len)
        return Gradients(out, *self.backward(q, k, v, out, saved, dout, kv_len))

    # ---- feature map and decoding ---------------------------------------------------------
    def features(self, x, positions=None):
        """phi(x) of the plan's feature map in float64, unstabilised (rk_attn_features_d):
        x (rows, d) (float32 is converted); positions: None (phi(x)) or one per row (the
        numerator's view: R phi(x) for rope='features', phi(R x) for rope='qk')."""
        x = _arrays.as_float(x, "x")
        if x.ndim != 2 or x.shape[1] != self.shape["d"]:
            raise ValueError(f"x: shape {x.shape}, expected (rows, {self.shape['d']})")
        xd = np.ascontiguousarray(x, dtype=np.float64)
        with self._using():
            F = _lib.lib.rk_attn_feature_dim(self._handles[0])
            phi = np.empty((x.shape[0], max(F, 1)), dtype=np.float64)[:, :F]
            pp = None
            if positions is not None:
                pos, pp = _arrays.positions(positions, x.shape[0])
            mx, mp = _arrays.mat(xd), _lib.Mat(phi.ctypes.data, x.shape[0], F, max(F, 1))
            _lib.check(_lib.lib.rk_attn_features_d(self._handles[0], ctypes.byref(mx), pp,
                                                   ctypes.byref(mp)))
        return phi

    def decoder(self):
        """A recurrent decoder (performer and linear plans): one (q, k, v) row at a time, the
        outputs of the causal batch result; positions start at the plan's offset."""
        self._check_open()
        if self._per_head or self.shape["batch"] != 1 or self.shape["heads"] != 1:
            raise ValueError("decoder(): a plan of batch 1 and heads 1 decodes one sequence")
        dec = Decoder(self)
        self._decoders.add(dec)
        return dec


class Decoder(Plan):
    """Recurrent decoding state of a performer or linear Attention plan (rk_attn_state)."""

    _destroy = "rk_attn_state_destroy"

    def __init__(self, attention):
        super().__init__()
        self._attention = attention       # the state reads the plan: keep it alive
        h = ctypes.c_void_p()
        with attention._using():
            _lib.check(_lib.lib.rk_attn_state_create(ctypes.byref(h), attention._handles[0]))
        self._handles.append(h.value)
        self._d, self._dv = attention.shape["d"], attention.shape["d_v"]

    def reset(self):
        """Back to the first position."""
        with self._using():
            _lib.lib.rk_attn_state_reset(self._handles[0])

    def step(self, q, k, v):
        """One row (q (d,), k (d,), v (d_v,)) -> out (d_v,); or rows (t, d), (t, d), (t, d_v)
        -> (t, d_v), one step per row."""
        q = _arrays.as_float(q, "q")
        k = _arrays.as_float(k, "k", q.dtype)
        v = _arrays.as_float(v, "v", q.dtype)
        one = q.ndim == 1
        t = 1 if one else q.shape[0]
        for name, a, w in (("q", q, self._d), ("k", k, self._d), ("v", v, self._dv)):
            if a.ndim != q.ndim or a.ndim not in (1, 2) or a.shape[-1] != w or \
                    (a.ndim == 2 and a.shape[0] != t):
                raise ValueError(f"{name}: shape {a.shape}, expected ({w},) or ({t}, {w}) "
                                 f"(q, k, v: one row each, or t rows each)")
        q2, k2, v2 = (np.atleast_2d(a) for a in (q, k, v))
        q2, k2, v2 = (np.ascontiguousarray(a) for a in (q2, k2, v2))
        out = np.empty((t, self._dv), dtype=q.dtype)
        fn = (_lib.lib.rk_attn_state_step_d if q.dtype == np.float64
              else _lib.lib.rk_attn_state_step)
        it = q.itemsize
        with self._using():
            for i in range(t):
                _lib.check(fn(self._handles[0], q2.ctypes.data + i * self._d * it,
                              k2.ctypes.data + i * self._d * it,
                              v2.ctypes.data + i * self._dv * it,
                              out.ctypes.data + i * self._dv * it))
        return out[0] if one else out


def attend(q, k, v, variant="softmax", *, layout="bhnd", kv_len=None, dout=None,
           precision=None, **opts):
    """Attention on every (b, h) slice, as `ropekit attend --variant NAME ...`.

    q (n_q, d), (h, n_q, d) or (b, h, n_q, d) (layout='bnhd': (n_q, h, d), (b, n_q, h, d));
    k (.., n_kv, d) and v (.., n_kv, d_v) with the same axes (k, v may have fewer heads than q:
    grouped-query attention). float32 or float64; the output has q's layout and dtype.

    variant: softmax, performer, linear, rpe-fft, or a named variant (variant_names()).
    Keywords (None / False: the default):
      causal, scale, offset (positions: key j at offset + j, query i at
        offset + n_kv - n_q + i), threads, isa ('auto' | 'portable' | 'avx2' | 'avx512')
      rope ('none' | 'qk' | 'features') with Rope's keywords (style, base, rotary_dim, scaling,
        rope_config, seq_len, ...) and freq_dim ('features' | 'head')
      performer / rpe-fft: features (m), kernel ('positive' | 'hyperbolic' | 'trig'),
        proj ('orthogonal' | 'iid' | an (m, d) array), fixed_norm, seed (default 1)
      linear / rpe-fft: map ('elu' | 'relu')
      softmax / rpe-fft: bias ((L,) or (heads, L), L = n_q + n_kv - 1), bias_kind
        ('none' | 't5' | 'alibi'), alibi_slope; rpe-fft: l2norm, fft_wisdom
      softmax: xpos (scale base), xpos_gamma; any: sinusoidal
      kv_len: keys per batch entry (one value, or one per b); precision: 'float32' |
        'float64' (compute in it, return q's dtype)
      dout: also run the backward: returns Gradients(out, dq, dk, dv)."""
    q = _arrays.as_float(q, "q")
    k = _arrays.as_float(k, "k", q.dtype)
    v = _arrays.as_float(v, "v", q.dtype)
    bq, hq, nq, d = _arrays.dims(q, layout, "q")
    if q.ndim != k.ndim or q.ndim != v.ndim:
        raise ValueError(f"q, k, v have {q.ndim}, {k.ndim}, {v.ndim} axes (they must match)")
    bk, hk, nkv, dk = _arrays.dims(k, layout, "k")
    bv, hv, nv, dv = _arrays.dims(v, layout, "v")
    if nq == 0 or d == 0:
        raise ValueError(f"q: shape {q.shape}: n_q and d must be > 0")
    if (bk, dk) != (bq, d) or hk == 0 or hq % hk:
        raise ValueError(f"k: shape {k.shape} does not go with q's {q.shape} (the same batch and "
                         f"d, and a number of heads that divides q's)")
    if nkv == 0:
        raise ValueError(f"k: shape {k.shape}: n_kv must be > 0")
    if (bv, hv, nv) != (bk, hk, nkv) or dv == 0:
        raise ValueError(f"v: shape {v.shape} does not go with k's {k.shape} (the same batch, "
                         f"heads and n_kv, and d_v > 0)")
    in_dtype = q.dtype
    work = in_dtype
    if precision is not None:
        work = np.dtype(_choice(precision, {"float32": np.float32, "float64": np.float64,
                                            "float": np.float32, "double": np.float64},
                                "precision"))
    if dout is not None:
        dout = _arrays.as_float(dout, "dout", in_dtype)
    if work != in_dtype:
        q, k, v = (x.astype(work) for x in (q, k, v))
        for name, x in (("q", q), ("k", k), ("v", v)):
            if not np.isfinite(x).all():
                raise ValueError(f"{name}: a value is not finite in {work} (out of its range)")
        if dout is not None:
            dout = dout.astype(work)
    with Attention(variant, n_q=nq, n_kv=nkv, d=d, d_v=dv, batch=bq, heads=hq, kv_heads=hk,
                   layout=layout, **opts) as att:
        if dout is None:
            out = att(q, k, v, kv_len=kv_len)
            return out.astype(in_dtype) if work != in_dtype else out
        g = att.grad(q, k, v, dout, kv_len=kv_len)
    if work != in_dtype:
        g = Gradients(*(x.astype(in_dtype) for x in g))
    return g
