#!/usr/bin/env python3
"""Regenerate the .npy seed corpus in this directory (standard library only, no numpy).

The name says what rk_npy_load must return (tests/test_npy.c test_seed_corpus checks it):
ok_* RK_OK, eformat_* RK_EFORMAT, eunsup_* RK_EUNSUP, eoverflow_* RK_EOVERFLOW.
Valid files are the exact bytes np.save writes (64-byte aligned header, numpy's growth padding).
Run from anywhere: python3 tests/data/npy/make_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def header(dict_text, major=1, growth=0, align=True):
    """Preamble + dict + padding + newline, the way numpy's _wrap_header does it."""
    pre = 10 if major == 1 else 12
    text = dict_text + " " * growth
    hlen = len(text) + 1
    pad = 64 - (pre + hlen) % 64 if align else 0
    fmt = "<H" if major == 1 else "<I"
    return (b"\x93NUMPY" + bytes([major, 0]) + struct.pack(fmt, hlen + pad)
            + text.encode() + b" " * pad + b"\n")


def npy_dict(descr, shape):
    shape_repr = "(%s)" % (", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    return "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_repr)


def growth(shape):
    return 21 - len(str(shape[0])) if shape else 0


def save(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def f4(vals):
    return struct.pack("<%df" % len(vals), *vals)


def f8(vals):
    return struct.pack("<%dd" % len(vals), *vals)


def std(descr, shape, payload, major=1):
    return header(npy_dict(descr, shape), major, growth(shape)) + payload


def main():
    vals = [2.385 * i - 7.5 for i in range(24)]
    # ---- valid
    save("ok_f4_2x3.npy", std("<f4", (2, 3), f4(range(6))))           # np.arange(6).reshape(2,3)
    save("ok_f8_scalar.npy", std("<f8", (), f8([1.5])))
    save("ok_f4_empty_3x0.npy", std("<f4", (3, 0), b""))
    save("ok_f8_1d_5.npy", std("<f8", (5,), f8(vals[:5])))
    save("ok_f4_4d.npy", std("<f4", (2, 1, 3, 2), f4(vals[:12])))
    save("ok_v2_f4_4.npy", std("<f4", (4,), f4(vals[:4]), major=2))
    save("ok_v3_f8_2x2.npy", std("<f8", (2, 2), f8(vals[:4]), major=3))
    save("ok_dquote_keyorder.npy",
         header('{"shape": (2, 2), "fortran_order": False, "descr": "<f4"}') + f4(vals[:4]))
    save("ok_py2_long.npy",
         header("{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 1L), }") + f8(vals[:2]))
    save("ok_no_padding.npy",
         header("{'descr':'<f4','fortran_order':False,'shape':(3,)}", align=False) + f4(vals[:3]))
    save("ok_special_values.npy",
         std("<f4", (4,), f4([float("nan"), float("inf"), -0.0, 1e-45])))
    # ---- malformed
    good = std("<f4", (2, 3), f4(vals[:6]))
    save("eformat_empty.npy", b"")
    save("eformat_bad_magic.npy", b"\x93NUMPZ" + good[6:])
    save("eformat_npz_zip.npy", b"PK\x03\x04" + good[4:])
    save("eformat_truncated_data.npy", good[:-1])
    save("eformat_trailing_byte.npy", good + b"\x00")
    save("eformat_truncated_header.npy", good[:40])
    save("eformat_header_past_end.npy", good[:8] + struct.pack("<H", 4000) + good[10:])
    save("eformat_absurd_header_len.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 30)
         + good[10:])
    save("eformat_zero_header_len.npy", good[:8] + b"\x00\x00" + good[10:])
    save("eformat_no_newline.npy", good[:127] + b" " + good[128:])
    save("eformat_missing_shape.npy",
         header("{'descr': '<f4', 'fortran_order': False, }") + f4(vals[:6]))
    save("eformat_duplicate_key.npy",
         header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}")
         + f4(vals[:6]))
    save("eformat_unknown_key.npy",
         header("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}") + f4(vals[:6]))
    save("eformat_shape_int.npy",
         header("{'descr': '<f4', 'fortran_order': False, 'shape': (6)}") + f4(vals[:6]))
    save("eformat_shape_negative.npy",
         header("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,)}") + f4(vals[:6]))
    save("eformat_garbage_after_dict.npy",
         header("{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} junk") + f4(vals[:6]))
    save("eformat_unterminated_string.npy",
         header("{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}") + f4(vals[:6]))
    save("eformat_huge_count.npy", std("<f4", (10 ** 18,), f4(vals[:6])))
    # ---- valid .npy we do not read
    for name, descr, nbytes in [("big_endian_f8", ">f8", 8), ("int32", "<i4", 4),
                                ("half", "<f2", 2), ("bool", "|b1", 1), ("complex64", "<c8", 8),
                                ("object", "|O", 8)]:
        save("eunsup_%s.npy" % name, std(descr, (3,), bytes(range(3 * nbytes))))
    save("eunsup_structured.npy",
         header("{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, "
                "'shape': (2,), }") + bytes(16))
    save("eunsup_fortran_order.npy",
         header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }") + f4(vals[:6]))
    save("eunsup_9_axes.npy", std("<f4", (1,) * 8 + (2,), f4(vals[:2])))
    save("eunsup_version_4.npy", b"\x93NUMPY\x04\x00" + good[8:])
    # ---- sizes that do not fit
    save("eoverflow_axis.npy", std("<f4", (10 ** 25,), b""))
    save("eoverflow_count.npy", std("<f4", (2 ** 32, 2 ** 32, 2), b""))
    save("eoverflow_bytes.npy", std("<f8", (2 ** 61,), b""))


if __name__ == "__main__":
    main()
