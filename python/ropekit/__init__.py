"""ropekit: RoPE and attention kernels (softmax, FAVOR+, linear, FFT relative bias) on NumPy
arrays, through the C library libropekit (ctypes; no compiled extension).

    import numpy as np, ropekit
    y = ropekit.rope(x, style="half", base=500000, offset=100)
    out = ropekit.attend(q, k, v, "performer", causal=True, features=256)
    exact = ropekit.attend(q, k, v, "softmax", causal=True)

The library is found through ROPEKIT_LIBRARY (a path), beside the package, where `make install`
put it, in the source tree's build/ directory, or as the installed soname libropekit.so.0
(ropekit.library_path says which file). Library failures raise ropekit.Error (code, message:
the library's rk_last_error()); arrays of the wrong dtype or shape raise ValueError before any
call. The GIL is released inside the library: plans (one per thread) run concurrently.
"""
import sys as _sys

try:
    from . import _lib  # noqa: F401  (loads the C library)
except ImportError as _e:
    # `python3 -m ropekit` imports the package first (sys.argv[0] is "-m" while the module is
    # located): let its __main__ report the problem in one line instead of a traceback.
    if _sys.argv[:1] != ["-m"]:
        raise
    import_error = _e
else:
    import_error = None
    from ._lib import (ALL_KEYS, EDEP, EDIM, EFORMAT, EINVAL, EIO, ENOMEM, ENONFINITE,
                       EOVERFLOW, EUNSUP, Error)
    from ._lib import FOUND_BY as library_found_by
    from ._lib import LIBRARY_PATH as library_path
    from ._lib import __version__, lib as _c
    from .attention import (BASE_NAMES, DEFAULT_SEED, VARIANTS, Attention, Decoder, Gradients,
                            attend, variant_names)
    from .encodings import (alibi_bias, alibi_slopes, bias_len, sinusoidal, t5_bias, t5_bucket,
                            xpos_zeta)
    from .rope import Rope, rope

__all__ = ["Attention", "Decoder", "Error", "Gradients", "Rope", "VARIANTS", "BASE_NAMES",
           "DEFAULT_SEED", "alibi_bias", "alibi_slopes", "attend", "bias_len", "isa_available",
           "isa_resolve", "library_found_by", "library_path", "library_version", "rope",
           "sinusoidal", "t5_bias", "t5_bucket", "variant_names", "xpos_zeta", "__version__",
           "EINVAL", "EDIM", "ENOMEM", "EOVERFLOW", "EUNSUP", "EDEP", "EIO", "EFORMAT",
           "ENONFINITE", "ALL_KEYS"]

_ISA = {"auto": 0, "portable": 1, "avx2": 2, "avx512": 3}


def library_version():
    """rk_version() of the loaded library ("0.1.0")."""
    return _c.rk_version().decode()


def isa_available(isa):
    """Whether this CPU can run the kernel path ('portable', 'avx2', 'avx512'; 'auto')."""
    if isa not in _ISA:
        raise ValueError(f"isa {isa!r}: expected one of {', '.join(_ISA)}")
    return bool(_c.rk_isa_available(_ISA[isa]))


def isa_resolve(isa="auto"):
    """The kernel path a plan with this isa would use here ('auto': the widest, or
    ROPEKIT_ISA)."""
    if isa not in _ISA:
        raise ValueError(f"isa {isa!r}: expected one of {', '.join(_ISA)}")
    return _c.rk_isa_name(_c.rk_isa_resolve(_ISA[isa])).decode()
