"""RoPE: the Rope plan and rope(), as `ropekit rope`."""
import ctypes
import json
import os

import numpy as np

from . import _arrays, _lib
from ._plan import Plan

# Every keyword that describes a RoPE (rk_rope_config, plus rope_config / truncate).
ROPE_KEYS = ("style", "base", "rotary_dim", "scaling", "factor", "orig_ctx", "max_pos",
             "beta_fast", "beta_slow", "attn_factor", "mscale", "mscale_all_dim", "truncate",
             "low_freq_factor", "high_freq_factor", "short_factor", "long_factor",
             "freq_factors", "freqs", "table_len", "seq_len", "rope_config", "isa")
# What a Hugging Face config gives (refused beside rope_config, as the command line does).
_FROM_FILE = ("base", "rotary_dim", "scaling", "factor", "orig_ctx", "max_pos", "beta_fast",
              "beta_slow", "attn_factor", "mscale", "mscale_all_dim", "truncate",
              "low_freq_factor", "high_freq_factor", "short_factor", "long_factor",
              "freq_factors", "freqs")
# scaling specs of the command line: name -> (min, max) number of ':' fields
_SPECS = {"none": (0, 0), "linear": (1, 1), "ntk": (1, 1), "dynamic": (2, 2), "yarn": (2, 2),
          "yarn-paper": (2, 2), "llama3": (2, 4)}
LEN_DEPENDENT = ("dynamic", "longrope")


def _choice(value, table, what):
    if value not in table:
        raise ValueError(f"{what} {value!r}: expected one of {', '.join(map(repr, table))}")
    return table[value]


def _number(value, what, positive=False, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if integer:
        if int(value) != value or value < 0:
            raise ValueError(f"{what} {value!r}: expected an integer >= 0")
        return int(value)
    v = float(value)
    if not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{what} {value!r}: expected a finite number{' > 0' if positive else ''}")
    return v


def parse_scaling(spec, opts):
    """A command-line spec ("yarn:4:8192", "llama3:8:8192:1:4") or a bare name, into opts
    (factor, orig_ctx, max_pos, low/high_freq_factor); returns the scaling name."""
    if not isinstance(spec, str):
        raise ValueError(f"scaling {spec!r}: expected a name or a spec such as 'yarn:4:8192'")
    name, *fields = spec.split(":")
    if name not in _lib.SCALING:
        raise ValueError(f"scaling {spec!r}: unknown (expected none, linear:F, ntk:F, "
                         f"dynamic:F:M, yarn:F:L, yarn-paper:F:L, llama3:F:L[:LO:HI], or the "
                         f"bare names with keywords, longrope with short_factor/long_factor)")
    if not fields:
        return name
    lo, hi = _SPECS.get(name, (0, 0))
    if not lo <= len(fields) <= hi or (name == "llama3" and len(fields) == 3):
        raise ValueError(f"scaling {spec!r}: {name} takes "
                         f"{lo if lo == hi else f'{lo} or {hi}'} ':' fields")
    vals = []
    for f in fields:
        try:
            v = float(f)
        except ValueError:
            raise ValueError(f"scaling {spec!r}: {f!r} is not a number") from None
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"scaling {spec!r}: {f!r} must be a finite number > 0")
        vals.append(v)
    keys = ["factor", "max_pos" if name == "dynamic" else "orig_ctx",
            "low_freq_factor", "high_freq_factor"]
    for key, v in zip(keys, vals):
        if opts.get(key) is not None:
            raise ValueError(f"scaling {spec!r} and {key}= both give the {key}")
        opts[key] = v
    return name


def _hf(rope_config, keep):
    """rk_rope_hf of a Hugging Face config: a dict (as JSON text) or a path."""
    h = _lib.RopeHF()
    if isinstance(rope_config, dict):
        try:
            text = json.dumps(rope_config, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise ValueError(f"rope_config: the dict is not JSON ({e})") from None
        rc = _lib.lib.rk_rope_hf_parse(ctypes.byref(h), text, len(text), b"rope_config")
    elif isinstance(rope_config, (str, bytes, os.PathLike)):
        rc = _lib.lib.rk_rope_hf_load(ctypes.byref(h), os.fsencode(rope_config))
    else:
        raise ValueError(f"rope_config: expected a dict or a path, got "
                         f"{type(rope_config).__name__}")
    _lib.check(rc)
    keep.append(h)        # its arrays stay valid until the plan copied them; freed by caller
    return h


def rope_config(dim, opts, keep, what="x"):
    """The rk_rope_config of the RoPE keywords in opts (unset: None). dim: the head width (0:
    leave it to the attention plan). keep: list that must outlive the create call; any rk_rope_hf
    in it must be freed (free_keep)."""
    opts = dict(opts)
    cfg = _lib.RopeConfig()
    file = opts.get("rope_config")
    if file is not None:
        for k in _FROM_FILE:
            if opts.get(k) is not None:
                raise ValueError(f"{k}= conflicts with rope_config= (the model's config gives it)")
        h = _hf(file, keep)
        ctypes.memmove(ctypes.byref(cfg), ctypes.byref(h.cfg), ctypes.sizeof(cfg))
        if dim and cfg.dim != dim:
            raise ValueError(f"{what} has d = {dim}, but rope_config gives a head width of "
                             f"{cfg.dim}")
    else:
        cfg.dim = dim
        name = "none"
        if opts.get("scaling") is not None:
            name = parse_scaling(opts["scaling"], opts)
        cfg.scaling = _lib.SCALING[name]
        if opts.get("base") is not None:
            cfg.base = _number(opts["base"], "base", positive=True)
            if cfg.base == 1.0:
                raise ValueError("base 1: the base must be != 1 (every theta_i would be 1)")
        if opts.get("rotary_dim") is not None:
            r = _number(opts["rotary_dim"], "rotary_dim", integer=True)
            if r == 0 or r % 2:
                raise ValueError(f"rotary_dim {r}: must be even and > 0")
            cfg.rotary_dim = r
        for k in ("factor", "orig_ctx", "max_pos", "beta_fast", "beta_slow", "attn_factor",
                  "mscale", "mscale_all_dim", "low_freq_factor", "high_freq_factor"):
            if opts.get(k) is not None:
                setattr(cfg, k, _number(opts[k], k))
        if opts.get("truncate") is not None:
            cfg.no_truncate = 0 if opts["truncate"] else 1
        for k in ("short_factor", "long_factor", "freq_factors", "freqs"):
            if opts.get(k) is not None:
                arr, ptr = _arrays.double_buffer(opts[k], k)
                keep.append(arr)
                setattr(cfg, k, ptr)
    if opts.get("style") is not None:
        cfg.style = _choice(opts["style"], _lib.STYLE, "style")
    if opts.get("table_len") is not None:
        cfg.table_len = _number(opts["table_len"], "table_len", integer=True)
    if opts.get("seq_len") is not None:
        cfg.seq_len = _number(opts["seq_len"], "seq_len", integer=True)
    if opts.get("isa") is not None:
        cfg.isa = _choice(opts["isa"], _lib.ISA, "isa")
    return cfg


def free_keep(keep):
    for h in keep:
        if isinstance(h, _lib.RopeHF):
            _lib.lib.rk_rope_hf_free(ctypes.byref(h))
    keep.clear()


def scaling_name(cfg):
    return _lib.lib.rk_rope_scaling_name(cfg.scaling).decode()


class Rope(Plan):
    """A RoPE plan (rk_rope): rotate rows of width dim (or of heads x dim) by their positions.

        with Rope(64, style="half", base=500000, scaling="llama3:8:8192") as r:
            y = r(x, offset=100)           # x: (n, 64), (h, n, 64), (b, h, n, 64)
            x2 = r(y, offset=100, inverse=True)

    Keywords (None: the library's default): style ('interleaved' | 'half'), base, rotary_dim,
    scaling (a name, or a command-line spec 'linear:F', 'ntk:F', 'dynamic:F:M', 'yarn:F:L',
    'yarn-paper:F:L', 'llama3:F:L[:LO:HI]'), factor, orig_ctx, max_pos, beta_fast, beta_slow,
    attn_factor, mscale, mscale_all_dim, truncate, low_freq_factor, high_freq_factor,
    short_factor, long_factor, freq_factors, freqs (sequences of r/2 values), table_len,
    seq_len (dynamic and longrope: the length the frequencies are for), rope_config (a Hugging
    Face config.json as a dict or a path; dim then defaults to its head width), isa
    ('auto' | 'portable' | 'avx2' | 'avx512')."""

    _destroy = "rk_rope_destroy"

    def __init__(self, dim=None, **opts):
        super().__init__()
        self._init(dim, opts, None)

    def _init(self, dim, opts, seq_len_default):
        """seq_len_default: the length dynamic / longrope take when seq_len is not given."""
        bad = sorted(set(opts) - set(ROPE_KEYS))
        if bad:
            raise TypeError(f"Rope() got unexpected keyword argument(s): {', '.join(bad)}")
        if dim is None and opts.get("rope_config") is None:
            raise ValueError("Rope(): give dim (the head width), or rope_config")
        if dim is not None:
            dim = _number(dim, "dim", integer=True)
            if dim == 0:
                raise ValueError("dim must be > 0")
        keep = []
        try:
            cfg = rope_config(dim or 0, opts, keep, what=f"dim {dim}")
            length_dependent = scaling_name(cfg) in LEN_DEPENDENT
            if opts.get("seq_len") is not None and not length_dependent:
                raise ValueError(f"seq_len has no effect with scaling {scaling_name(cfg)} (only "
                                 f"dynamic and longrope depend on the length)")
            if opts.get("seq_len") is None and length_dependent and seq_len_default is not None:
                cfg.seq_len = seq_len_default
            h = ctypes.c_void_p()
            _lib.check(_lib.lib.rk_rope_create(ctypes.byref(h), ctypes.byref(cfg)))
            self._handles.append(h.value)
            self._h = h.value
        finally:
            free_keep(keep)
        g = _lib.lib.rk_rope_get_config(self._h).contents
        self.dim = g.dim
        self.rotary_dim = g.rotary_dim

    # ---- what the plan resolved ---------------------------------------------------------
    @property
    def config(self):
        """The resolved rk_rope_config as a dict (style, scaling by name; arrays as lists)."""
        self._check_open()
        g = _lib.lib.rk_rope_get_config(self._h).contents
        d = _lib.struct_dict(g)
        d["style"] = "half" if g.style == 1 else "interleaved"
        d["scaling"] = scaling_name(g)
        d["isa"] = _lib.lib.rk_isa_name(g.isa).decode()
        d["truncate"] = not d.pop("no_truncate")
        for k in ("short_factor", "long_factor", "freq_factors", "freqs"):
            p = getattr(g, k)
            d[k] = list(p[:g.rotary_dim // 2]) if p else None
        return d

    @property
    def freqs(self):
        """The r/2 frequencies theta_i after scaling (float64 copy)."""
        self._check_open()
        p = _lib.lib.rk_rope_freqs(self._h)
        return np.ctypeslib.as_array(p, shape=(self.rotary_dim // 2,)).copy()

    @property
    def mscale(self):
        """The attention factor m multiplying cos and sin."""
        self._check_open()
        return _lib.lib.rk_rope_mscale(self._h)

    @property
    def nbytes(self):
        self._check_open()
        return _lib.lib.rk_rope_bytes(self._h)

    # ---- apply --------------------------------------------------------------------------
    def __call__(self, x, offset=0, positions=None, inverse=False, layout="bhnd", out=None):
        """RoPE of every (n, d) slice of x: row t at offset + t, or positions[t]. x: (n, d),
        (h, n, d), (b, h, n, d), or with layout='bnhd' (n, h, d), (b, n, h, d); float32 or
        float64. Returns a new array of x's shape and dtype, or writes out (x itself: in
        place)."""
        return self._run(x, offset, positions, inverse, layout, out, backward=False)

    def backward(self, dy, offset=0, positions=None, layout="bhnd", out=None):
        """dx = m R^T dy: the gradient through the forward rotation (not the inverse when
        the attention factor m != 1)."""
        return self._run(dy, offset, positions, False, layout, out, backward=True)

    def _run(self, x, offset, positions, inverse, layout, out, backward):
        self._check_open()
        name = "dy" if backward else "x"
        x = _arrays.as_float(x, name)
        b, h, n, d = _arrays.dims(x, layout, name)
        if d != self.dim:
            raise ValueError(f"{name}: shape {x.shape}: d = {d}, but the plan's dim is "
                             f"{self.dim}")
        offset = _offset(offset)
        pos = posp = None
        if positions is not None:
            pos, posp = _arrays.positions(positions, n)
        elif n and offset > 0 and offset > (1 << 63) - 1 - (n - 1):
            raise ValueError(f"offset {offset}: the last position overflows int64")
        xv = _arrays.viewable(x)
        if out is None:
            out = np.empty_like(xv, order="C") if xv is not x else np.empty(x.shape, x.dtype)
        else:
            if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != x.dtype:
                raise ValueError(f"out: expected an array of shape {x.shape} and dtype "
                                 f"{x.dtype}")
            if not out.flags.writeable or not _arrays.is_view(out):
                raise ValueError("out: must be writeable with its last axis contiguous")
            if out is not x and np.shares_memory(out, x):
                raise ValueError("out overlaps x without being x (in place: out=x)")
        if out is x:
            xv = out
        tin = _arrays.tensor(xv, layout)
        tout = _arrays.tensor(out, layout)
        f64 = x.dtype == np.float64
        if backward:
            fn = _lib.lib.rk_rope_backward_d if f64 else _lib.lib.rk_rope_backward
        else:
            fn = _lib.lib.rk_rope_apply_d if f64 else _lib.lib.rk_rope_apply
        with self._using():
            for bi in range(b):
                for hi in range(h):
                    mi = _arrays.slice_mat(xv, tin, bi, hi)
                    mo = _arrays.slice_mat(out, tout, bi, hi)
                    args = (self._h, ctypes.byref(mi), ctypes.byref(mo), offset, posp)
                    _lib.check(fn(*args) if backward else fn(*args, 1 if inverse else 0))
        return out


def _offset(offset):
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise ValueError(f"offset {offset!r}: expected an integer")
    offset = int(offset)
    if not -(1 << 63) <= offset < (1 << 63):
        raise ValueError(f"offset {offset}: outside the int64 range")
    return offset


def rope(x, offset=0, positions=None, inverse=False, layout="bhnd", **opts):
    """RoPE on every (n, d) slice of x, as `ropekit rope --in X --out Y [options]`: a new
    array of x's shape and dtype. Row t of each slice is at position offset + t (or
    positions[t]). The keywords are Rope's; dim is x's last axis. dynamic and longrope take
    the sequence length offset + n (HF: the largest position + 1) unless seq_len is given."""
    x = _arrays.as_float(x, "x")
    b, h, n, d = _arrays.dims(x, layout, "x")
    if d == 0:
        raise ValueError(f"x: shape {x.shape}: d must be > 0")
    if opts.get("rope_config") is None:
        r = opts.get("rotary_dim")
        if r is None and d % 2:
            raise ValueError(f"x has odd d = {d}: RoPE rotates pairs of channels (give an even "
                             f"rotary_dim < d to rotate only part of each row)")
        if r is not None and isinstance(r, (int, np.integer)) and r > d:
            raise ValueError(f"rotary_dim {r} exceeds d = {d} of x")
    # HF's sequence length: the largest position + 1 (0 when every position is negative)
    default = None
    if n > 0:
        last = (int(np.max(positions)) if positions is not None and np.size(positions)
                else _offset(offset) + n - 1)
        default = max(last + 1, 0)
    r = Rope.__new__(Rope)
    Plan.__init__(r)
    with r:
        r._init(d, opts, default)
        return r(x, offset=offset, positions=positions, inverse=inverse, layout=layout)
