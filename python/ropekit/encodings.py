"""Relative biases and classic position encodings (ropekit.h, "Position encodings and
relative biases"): the arrays the library computes, as NumPy arrays."""
import ctypes

import numpy as np

from . import _arrays, _lib

_P = ctypes.POINTER(ctypes.c_double)


def _size(value, what, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} {value!r}: expected an integer >= {minimum}")
    return int(value)


def bias_len(n_q, n_kv):
    """n_q + n_kv - 1: the number of relative offsets of an (n_q, n_kv) plan (0 if either is
    0). Entry t + n_kv - 1 is the offset t = key - query position."""
    return _lib.lib.rk_bias_len(_size(n_q, "n_q"), _size(n_kv, "n_kv"))


def t5_bucket(t, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's relative position bucket of the offset t = key - query."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
        raise ValueError(f"t {t!r}: expected an integer offset")
    out = ctypes.c_size_t()
    _lib.check(_lib.lib.rk_t5_bucket(int(t), 1 if bidirectional else 0,
                                     _size(num_buckets, "num_buckets"),
                                     _size(max_distance, "max_distance"), ctypes.byref(out)))
    return out.value


def t5_bias(n_q, n_kv, table=None, bidirectional=True, num_buckets=32, max_distance=128):
    """The (n_q + n_kv - 1,) bias of a T5 bucket table (num_buckets values), or of the library's
    stand-in table -ln(1 + distance) when table is None."""
    n_q, n_kv = _size(n_q, "n_q", 1), _size(n_kv, "n_kv", 1)
    nb = _size(num_buckets, "num_buckets")
    out = np.empty(bias_len(n_q, n_kv), dtype=np.float64)
    tp = None
    if table is not None:
        tab, tp = _arrays.double_buffer(table, "table", nb if nb else 32)
    _lib.check(_lib.lib.rk_bias_t5(out.ctypes.data_as(_P), n_q, n_kv, tp,
                                   1 if bidirectional else 0, nb,
                                   _size(max_distance, "max_distance")))
    return out


def alibi_slopes(n_heads):
    """ALiBi's head slopes (the official get_slopes)."""
    n = _size(n_heads, "n_heads")
    out = np.empty(n, dtype=np.float64)
    _lib.check(_lib.lib.rk_alibi_slopes(out.ctypes.data_as(_P), n))
    return out


def alibi_bias(n_q, n_kv, slope):
    """ALiBi's bias of one head: b(t) = -slope |t|, (n_q + n_kv - 1,) values."""
    n_q, n_kv = _size(n_q, "n_q", 1), _size(n_kv, "n_kv", 1)
    out = np.empty(bias_len(n_q, n_kv), dtype=np.float64)
    _lib.check(_lib.lib.rk_bias_alibi(out.ctypes.data_as(_P), n_q, n_kv, float(slope)))
    return out


def sinusoidal(x, offset=0, base=0.0, layout="bhnd"):
    """x + p: the sinusoidal encoding (RoFormer eq. 4) added to a copy of x, row t of every
    (n, d) slice at position offset + t. base 0: 10000."""
    x = _arrays.as_float(x, "x")
    out = np.array(x, order="C", copy=True)
    add_sinusoidal(out, offset, base, layout)
    return out


def add_sinusoidal(x, pos0, base=0.0, layout="bhnd"):
    """In place on a C-contiguous array (the library's rk_sinusoidal_add per slice)."""
    b, h, n, d = _arrays.dims(x, layout, "x")
    t = _arrays.tensor(x, layout)
    fn = _lib.lib.rk_sinusoidal_add_d if x.dtype == np.float64 else _lib.lib.rk_sinusoidal_add
    for bi in range(b):
        for hi in range(h):
            m = _arrays.slice_mat(x, t, bi, hi)
            _lib.check(fn(ctypes.byref(m), int(pos0), float(base)))


def xpos_zeta(r, gamma=0.0):
    """xPos's r/2 factors zeta_i = (2i/r + gamma) / (1 + gamma) (gamma 0: 0.4)."""
    r = _size(r, "r")
    out = np.empty(r // 2, dtype=np.float64)
    _lib.check(_lib.lib.rk_xpos_zeta(out.ctypes.data_as(_P), r, float(gamma)))
    return out
