"""The C library through ctypes: where it is found, its structs, its prototypes, its errors.

Nothing here is public API; ropekit/__init__.py re-exports what is. The structs mirror
lib/ropekit.h field for field (tests/test_layout.py compiles a C program against the header and
compares every size and offset, so a header change breaks the tests, not the users).
"""
import ctypes
import os
import sys
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int64,
                    c_size_t, c_uint, c_ulong, c_void_p)

# The library version this package is written against: the header's RK_VERSION. The library
# found must have the same major.minor (its structs are this package's Structures).
__version__ = "0.1.0"

SONAME = "libropekit.so.0"

# ---- error codes (enum in ropekit.h) -------------------------------------------------------
OK, EINVAL, EDIM, ENOMEM, EOVERFLOW, EUNSUP, EDEP, EIO, EFORMAT, ENONFINITE = range(10)
ERROR_NAMES = ("OK", "EINVAL", "EDIM", "ENOMEM", "EOVERFLOW", "EUNSUP", "EDEP", "EIO",
               "EFORMAT", "ENONFINITE")

# ---- other enums ---------------------------------------------------------------------------
ISA = {"auto": 0, "portable": 1, "avx2": 2, "avx512": 3}
STYLE = {"interleaved": 0, "half": 1}
SCALING = {"none": 0, "linear": 1, "ntk": 2, "yarn": 3, "yarn-paper": 4, "dynamic": 5,
           "llama3": 6, "longrope": 7}
KIND = {"softmax": 1, "performer": 2, "linear": 3, "rpe-fft": 4, "uniform": 5}
ROPE_MODE = {"none": 0, "qk": 1, "features": 2}
KERNEL = {"positive": 0, "hyperbolic": 1, "trig": 2}
MAP = {"elu": 0, "relu": 1}
PROJ = {"orthogonal": 0, "iid": 1}
NORM = {"chi": 0, "fixed": 1}
ALIGN = {"bottom_right": 0, "q_start": 1}
ALL_KEYS = (1 << (8 * ctypes.sizeof(c_size_t))) - 1     # RK_ALL_KEYS = (size_t)-1

FIELD_SCALE = 1 << 0
FIELD_ROPE_QK = 1 << 1
FIELD_ROPE_FEATURES = 1 << 2
FIELD_FEATURES = 1 << 3
FIELD_KERNEL = 1 << 4
FIELD_PROJ = 1 << 5
FIELD_MAP = 1 << 6
FIELD_BIAS = 1 << 7
FIELD_XPOS = 1 << 8
FIELD_FFT = 1 << 9
FIELD_ALIGN = 1 << 10
FIELD_NAMES = {FIELD_SCALE: "scale", FIELD_ROPE_QK: "rope_qk", FIELD_ROPE_FEATURES:
               "rope_features", FIELD_FEATURES: "features", FIELD_KERNEL: "kernel",
               FIELD_PROJ: "proj", FIELD_MAP: "map", FIELD_BIAS: "bias", FIELD_XPOS: "xpos",
               FIELD_FFT: "fft", FIELD_ALIGN: "align"}


class Error(RuntimeError):
    """A failure reported by the library: code (an RK_E* value), name ("EINVAL", ...) and
    message (rk_last_error() of the failing call, or the code's description)."""

    def __init__(self, code, message):
        self.code = int(code)
        self.name = ERROR_NAMES[self.code] if 0 <= self.code < len(ERROR_NAMES) else str(code)
        self.message = message
        super().__init__(f"{message} ({self.name})")


# ---- structs -------------------------------------------------------------------------------
class Mat(Structure):            # rk_mat and rk_matd: data pointer, rows, cols, ld
    _fields_ = [("data", c_void_p), ("rows", c_size_t), ("cols", c_size_t), ("ld", c_size_t)]


class Tensor(Structure):         # rk_tensor and rk_tensord (element strides)
    _fields_ = [("data", c_void_p), ("b", c_size_t), ("h", c_size_t), ("n", c_size_t),
                ("d", c_size_t), ("sb", c_size_t), ("sh", c_size_t), ("sn", c_size_t)]


class RopeConfig(Structure):     # rk_rope_config
    _fields_ = [
        ("dim", c_size_t), ("rotary_dim", c_size_t), ("style", c_int), ("base", c_double),
        ("scaling", c_int), ("factor", c_double), ("orig_ctx", c_double),
        ("beta_fast", c_double), ("beta_slow", c_double), ("attn_factor", c_double),
        ("table_len", c_size_t), ("max_pos", c_double), ("seq_len", c_size_t),
        ("mscale", c_double), ("mscale_all_dim", c_double), ("no_truncate", c_int),
        ("low_freq_factor", c_double), ("high_freq_factor", c_double),
        ("short_factor", POINTER(c_double)), ("long_factor", POINTER(c_double)),
        ("freq_factors", POINTER(c_double)), ("freqs", POINTER(c_double)), ("isa", c_int),
    ]


class RopeHF(Structure):         # rk_rope_hf
    _fields_ = [("cfg", RopeConfig), ("rope_type", c_char * 16), ("head_dim", c_size_t),
                ("partial_rotary_factor", c_double), ("factors", POINTER(c_double))]


class AttnConfig(Structure):     # rk_attn_config
    _fields_ = [
        ("kind", c_int), ("n_q", c_size_t), ("n_kv", c_size_t), ("d", c_size_t),
        ("d_v", c_size_t), ("causal", c_int), ("scale", c_double), ("rope", c_int),
        ("rope_cfg", RopeConfig), ("pos_offset", c_int64), ("nthreads", c_int),
        ("n_features", c_size_t), ("kernel", c_int), ("map", c_int), ("proj", c_int),
        ("proj_norm", c_int), ("seed", c_ulong), ("proj_data", POINTER(c_float)),
        ("rope_freq_dim_head", c_int), ("bias", POINTER(c_double)), ("bias_len", c_size_t),
        ("rpe_base", c_int), ("rpe_l2norm", c_int), ("fft_wisdom", c_char_p),
        ("xpos_scale_base", c_double), ("xpos_gamma", c_double), ("batch", c_size_t),
        ("heads", c_size_t), ("kv_heads", c_size_t), ("isa", c_int), ("align", c_int),
        ("q_start", c_int64),
    ]


class AttnInfo(Structure):       # rk_attn_info
    _fields_ = [("name", c_char_p), ("fields", c_uint), ("feature_dim", c_size_t),
                ("fft_len", c_size_t)]


class DlInfo(Structure):         # glibc's Dl_info, to name the file a symbol came from
    _fields_ = [("dli_fname", c_char_p), ("dli_fbase", c_void_p), ("dli_sname", c_char_p),
                ("dli_saddr", c_void_p)]


P = POINTER
_i, _v, _sz, _d = c_int, c_void_p, c_size_t, c_double
PROTOTYPES = {
    "rk_version": (c_char_p, []),
    "rk_strerror": (c_char_p, [_i]),
    "rk_last_error": (c_char_p, []),
    "rk_isa_name": (c_char_p, [_i]),
    "rk_isa_available": (_i, [_i]),
    "rk_isa_resolve": (_i, [_i]),
    # RoPE
    "rk_rope_resolve": (_i, [P(RopeConfig)]),
    "rk_rope_create": (_i, [P(_v), P(RopeConfig)]),
    "rk_rope_destroy": (None, [_v]),
    "rk_rope_get_config": (P(RopeConfig), [_v]),
    "rk_rope_freqs": (P(_d), [_v]),
    "rk_rope_mscale": (_d, [_v]),
    "rk_rope_bytes": (_sz, [_v]),
    "rk_rope_scaling_name": (c_char_p, [_i]),
    "rk_rope_apply": (_i, [_v, P(Mat), P(Mat), c_int64, P(c_int64), _i]),
    "rk_rope_apply_d": (_i, [_v, P(Mat), P(Mat), c_int64, P(c_int64), _i]),
    "rk_rope_backward": (_i, [_v, P(Mat), P(Mat), c_int64, P(c_int64)]),
    "rk_rope_backward_d": (_i, [_v, P(Mat), P(Mat), c_int64, P(c_int64)]),
    "rk_rope_hf_load": (_i, [P(RopeHF), c_char_p]),
    "rk_rope_hf_parse": (_i, [P(RopeHF), c_char_p, _sz, c_char_p]),
    "rk_rope_hf_free": (None, [P(RopeHF)]),
    # attention
    "rk_attn_resolve": (_i, [P(AttnConfig), P(AttnInfo)]),
    "rk_attn_kind_name": (c_char_p, [_i]),
    "rk_attn_kind_fields": (c_uint, [_i]),
    "rk_attn_fields": (c_uint, [P(AttnConfig)]),
    "rk_attn_create": (_i, [P(_v), P(AttnConfig)]),
    "rk_attn_destroy": (None, [_v]),
    "rk_attn_get_config": (P(AttnConfig), [_v]),
    "rk_attn_get_info": (P(AttnInfo), [_v]),
    "rk_attn_bytes": (_sz, [_v]),
    "rk_attn_execute_batch": (_i, [_v, P(Tensor), P(Tensor), P(Tensor), P(Tensor), P(_sz)]),
    "rk_attn_execute_batch_d": (_i, [_v, P(Tensor), P(Tensor), P(Tensor), P(Tensor), P(_sz)]),
    "rk_attn_saved_len": (_sz, [_v]),
    "rk_attn_forward_batch": (_i, [_v, P(Tensor), P(Tensor), P(Tensor), P(Tensor), P(_sz),
                                   _v]),
    "rk_attn_forward_batch_d": (_i, [_v, P(Tensor), P(Tensor), P(Tensor), P(Tensor), P(_sz),
                                     _v]),
    "rk_attn_backward_batch": (_i, [_v, P(Tensor), P(Tensor), P(Tensor), P(Tensor), _v,
                                    P(Tensor), P(Tensor), P(Tensor), P(Tensor), P(_sz)]),
    "rk_attn_backward_batch_d": (_i, [_v, P(Tensor), P(Tensor), P(Tensor), P(Tensor), _v,
                                      P(Tensor), P(Tensor), P(Tensor), P(Tensor), P(_sz)]),
    "rk_attn_proj": (P(c_float), [_v, P(_sz), P(_sz)]),
    "rk_attn_feature_dim": (_sz, [_v]),
    "rk_attn_features_d": (_i, [_v, P(Mat), P(c_int64), P(Mat)]),
    "rk_attn_state_create": (_i, [P(_v), _v]),
    "rk_attn_state_destroy": (None, [_v]),
    "rk_attn_state_reset": (None, [_v]),
    "rk_attn_state_step": (_i, [_v, _v, _v, _v, _v]),
    "rk_attn_state_step_d": (_i, [_v, _v, _v, _v, _v]),
    # encodings and biases
    "rk_bias_len": (_sz, [_sz, _sz]),
    "rk_t5_bucket": (_i, [c_int64, _i, _sz, _sz, P(_sz)]),
    "rk_bias_t5": (_i, [P(_d), _sz, _sz, P(_d), _i, _sz, _sz]),
    "rk_alibi_slopes": (_i, [P(_d), _sz]),
    "rk_bias_alibi": (_i, [P(_d), _sz, _sz, _d]),
    "rk_sinusoidal_add": (_i, [P(Mat), c_int64, _d]),
    "rk_sinusoidal_add_d": (_i, [P(Mat), c_int64, _d]),
    "rk_xpos_zeta": (_i, [P(_d), _sz, _d]),
}


# ---- finding the library -------------------------------------------------------------------
def _candidates():
    """(path, how) pairs in search order; ROPEKIT_LIBRARY, when set, is the only one."""
    env = os.environ.get("ROPEKIT_LIBRARY")
    if env:
        return [(env, "ROPEKIT_LIBRARY")]
    here = os.path.dirname(os.path.abspath(__file__))
    out = [(os.path.join(here, SONAME), "beside the package")]
    try:                                   # written by `make install`: the library's directory
        from . import _install             # pylint: disable=import-outside-toplevel
        out.append((os.path.join(_install.LIBDIR, SONAME), "installed with the package"))
    except ImportError:
        pass
    # the source tree: python/ropekit/ -> build/ (after `make`)
    out.append((os.path.join(here, os.pardir, os.pardir, "build", SONAME), "the build tree"))
    out.append((SONAME, "the dynamic linker (installed soname)"))
    return out


def _real_path(lib, fallback):
    """The file the dynamic linker actually loaded (dladdr on one of its symbols)."""
    try:
        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
        dladdr.argtypes = [c_void_p, P(DlInfo)]
        dladdr.restype = c_int
        info = DlInfo()
        addr = ctypes.cast(lib.rk_version, c_void_p).value
        if dladdr(addr, ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(os.fsdecode(info.dli_fname))
    except (AttributeError, OSError):
        pass
    return os.path.realpath(fallback) if os.sep in fallback else fallback


def _load():
    tried = []
    for path, how in _candidates():
        if os.sep in path and not os.path.exists(path):
            if how == "ROPEKIT_LIBRARY":
                raise ImportError(f"ropekit: ROPEKIT_LIBRARY={path}: no such file")
            tried.append(f"{path} ({how}): no such file")
            continue
        try:
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
        except OSError as e:
            if how == "ROPEKIT_LIBRARY":
                raise ImportError(f"ropekit: ROPEKIT_LIBRARY={path}: {e}") from None
            tried.append(f"{path} ({how}): {e}")
            continue
        return lib, _real_path(lib, path), how
    raise ImportError("ropekit: cannot find the C library " + SONAME + " (build it with `make`, "
                      "install it with `make install`, or set ROPEKIT_LIBRARY to its path); "
                      "tried:\n  " + "\n  ".join(tried))


def _bind(lib):
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"ropekit: {LIBRARY_PATH} has no {name} (a library older than "
                              f"this package, {__version__}?)") from None
        fn.restype = restype
        fn.argtypes = argtypes


lib, LIBRARY_PATH, FOUND_BY = _load()
_bind(lib)
LIBRARY_VERSION = lib.rk_version().decode()
if LIBRARY_VERSION.split(".")[:2] != __version__.split(".")[:2]:
    raise ImportError(f"ropekit: {LIBRARY_PATH} is version {LIBRARY_VERSION}, but this package "
                      f"binds the {__version__} API (the versions' major.minor must match)")


def last_error(code):
    msg = lib.rk_last_error()
    msg = msg.decode(errors="replace") if msg else ""
    return msg or lib.rk_strerror(code).decode()


def check(code):
    """Raise Error for a nonzero library status (call right after the library call, on the
    same thread: rk_last_error() is per thread)."""
    if code:
        raise Error(code, last_error(code))


def struct_dict(s):
    """Plain values of a struct's scalar fields (pointers left out)."""
    out = {}
    for name, typ in s._fields_:
        v = getattr(s, name)
        if isinstance(v, (int, float)):
            out[name] = v
        elif isinstance(v, bytes):
            out[name] = v.decode()
    return out


if sys.byteorder != "little":      # the library's .npy and our dtype checks assume it
    raise ImportError("ropekit: a little-endian machine is required")
