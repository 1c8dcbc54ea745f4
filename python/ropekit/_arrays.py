"""NumPy arrays as the library's views: dtype and shape checks, zero-copy strides."""
import ctypes

import numpy as np

from . import _lib

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("bhnd", "bnhd")


def as_float(x, name, dtype=None):
    """x as a float32 or float64 ndarray (a ValueError for anything else: no silent casts).
    Non-native byte order is converted (one copy). dtype: the one it must have."""
    if not isinstance(x, np.ndarray):
        if x is None:
            raise ValueError(f"{name}: expected a float32 or float64 array, got None")
        try:
            x = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - anything NumPy cannot take
            raise ValueError(f"{name}: cannot be read as an array ({e})") from None
    if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):
        raise ValueError(f"{name}: dtype {x.dtype} is not supported (float32 or float64)")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name}: dtype {x.dtype}, but {dtype} is expected (q, k, v and the "
                         f"other arrays of a call share one dtype)")
    return x


def is_view(x):
    """True if the library can read x in place: aligned, last axis contiguous, every stride a
    non-negative multiple of the element size."""
    it = x.itemsize
    if not x.flags.aligned:
        return False
    if x.ndim and x.shape[-1] > 1 and x.strides[-1] != it:
        return False
    for s, n in zip(x.strides, x.shape):
        if n > 1 and (s < 0 or s % it):
            return False
    return True


def viewable(x):
    """x itself if it is a view the library can use, else one C-contiguous copy."""
    return x if is_view(x) else np.ascontiguousarray(x)


def axes(ndim, layout):
    """Positions of (b, h, n, d) in an array of ndim axes (None: the axis is absent)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected 'bhnd' or 'bnhd'")
    if ndim == 2:
        return (None, None, 0, 1)
    if ndim == 3:
        return (None, 0, 1, 2) if layout == "bhnd" else (None, 1, 0, 2)
    if ndim == 4:
        return (0, 1, 2, 3) if layout == "bhnd" else (0, 2, 1, 3)
    raise ValueError(f"{ndim} axes")


def dims(x, layout, name):
    """(b, h, n, d) of x in the layout; a ValueError for 1 or more than 4 axes."""
    if x.ndim < 2 or x.ndim > 4:
        what = "(b, h, n, d)" if layout == "bhnd" else "(b, n, h, d)"
        raise ValueError(f"{name}: shape {x.shape}: expected (n, d), "
                         f"{'(h, n, d)' if layout == 'bhnd' else '(n, h, d)'} or {what}")
    ax = axes(x.ndim, layout)
    return tuple(1 if a is None else x.shape[a] for a in ax)


def tensor(x, layout):
    """The rk_tensor view of x (which must be viewable)."""
    ax = axes(x.ndim, layout)
    it = x.itemsize
    shape = [1 if a is None else x.shape[a] for a in ax]
    strides = [0 if (a is None or x.shape[a] == 1) else x.strides[a] // it for a in ax]
    b, h, n, d = shape
    sb, sh, sn = strides[:3]
    if n <= 1:
        sn = d          # one row: any stride reads the same; the library wants sn >= d
    return _lib.Tensor(x.ctypes.data, b, h, n, d, sb, sh, sn)


def mat(x):
    """The rk_mat view of a 2-D viewable array."""
    rows, cols = x.shape
    ld = x.strides[0] // x.itemsize if rows > 1 else cols
    return _lib.Mat(x.ctypes.data, rows, cols, ld)


def slice_mat(x, t, b, h):
    """rk_tensor_slice: head (b, h) of tensor t over x's buffer as an rk_mat."""
    off = (b * t.sb + h * t.sh) * x.itemsize
    return _lib.Mat(t.data + off, t.n, t.d, t.sn)


def empty(shape_bhnd, layout, ndim, dtype):
    """A new C-contiguous array of logical shape (b, h, n, d) in the layout with ndim axes."""
    b, h, n, d = shape_bhnd
    if ndim == 2:
        shape = (n, d)
    elif ndim == 3:
        shape = (h, n, d) if layout == "bhnd" else (n, h, d)
    else:
        shape = (b, h, n, d) if layout == "bhnd" else (b, n, h, d)
    return np.empty(shape, dtype=dtype)


def double_buffer(values, name, length=None):
    """A C double array (kept by the caller) from a 1-D sequence of finite-or-not numbers."""
    a = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {a.shape}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{name}: {a.shape[0]} values, expected {length}")
    return a, a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def positions(pos, n, name="positions"):
    """An int64 C array of n positions (kept by the caller) and its pointer."""
    a = np.asarray(pos)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name}: integer positions expected, got dtype {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name}: shape {a.shape}, expected ({n},): one position per row")
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: a position exceeds the int64 range")
    a = np.ascontiguousarray(a, dtype=np.int64)
    return a, a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
