"""The ctypes mirrors of ropekit.h against the C compiler: every struct's size and every field's
offset and size, the field names in header order, the enum values, the version. A header change
breaks these tests, not the users."""
import ctypes
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from ropekit import _lib

HEADER = os.path.join(ROOT, "lib", "ropekit.h")
STRUCTS = {"rk_mat": _lib.Mat, "rk_matd": _lib.Mat, "rk_tensor": _lib.Tensor,
           "rk_tensord": _lib.Tensor, "rk_rope_config": _lib.RopeConfig,
           "rk_rope_hf": _lib.RopeHF, "rk_attn_config": _lib.AttnConfig,
           "rk_attn_info": _lib.AttnInfo}
ENUMS = {"RK_" + n: v for n, v in zip(_lib.ERROR_NAMES[1:], range(1, 10))}
ENUMS.update({"RK_ISA_" + k.upper(): v for k, v in _lib.ISA.items()})
ENUMS.update({"RK_ROPE_INTERLEAVED": 0, "RK_ROPE_HALF": 1})
ENUMS.update({"RK_SCALE_" + k.upper().replace("-", "_"): v for k, v in _lib.SCALING.items()})
ENUMS.update({"RK_" + k.upper().replace("-", "_"): v for k, v in _lib.KIND.items()})
ENUMS.update({"RK_ROPE_" + k.upper(): v for k, v in _lib.ROPE_MODE.items()})
ENUMS.update({"RK_KERNEL_" + k.upper(): v for k, v in _lib.KERNEL.items()})
ENUMS.update({"RK_MAP_" + k.upper(): v for k, v in _lib.MAP.items()})
ENUMS.update({"RK_PROJ_" + k.upper(): v for k, v in _lib.PROJ.items()})
ENUMS.update({"RK_NORM_" + k.upper(): v for k, v in _lib.NORM.items()})
ENUMS.update({"RK_ALIGN_" + k.upper(): v for k, v in _lib.ALIGN.items()})
ENUMS.update({"RK_FIELD_" + n.upper(): f for f, n in _lib.FIELD_NAMES.items()})


def compile_and_run(tmp_path, body):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler (cc) to check the struct layouts with"
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include \"ropekit.h\"\n"
                   "int main(void)\n{\n" + body + "    return 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I" + os.path.join(ROOT, "lib"), str(src), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout


def test_struct_sizes_and_offsets(tmp_path):
    body = []
    for cname, st in STRUCTS.items():
        body.append(f'    printf("{cname} sizeof %zu\\n", sizeof({cname}));')
        for f, _ in st._fields_:
            body.append(f'    printf("{cname} {f} %zu %zu\\n", offsetof({cname}, {f}), '
                        f'sizeof((({cname} *)0)->{f}));')
    out = compile_and_run(tmp_path, "\n".join(body) + "\n")
    c = {}
    for line in out.splitlines():
        name, field, *vals = line.split()
        c[(name, field)] = tuple(int(x) for x in vals)
    for cname, st in STRUCTS.items():
        assert c[(cname, "sizeof")] == (ctypes.sizeof(st),), f"sizeof({cname})"
        for f, typ in st._fields_:
            want = (getattr(st, f).offset, ctypes.sizeof(typ))
            assert c[(cname, f)] == want, f"{cname}.{f}: C (offset, size) {c[(cname, f)]}, " \
                                          f"ctypes {want}"


def header_fields(text, cname):
    """The field names of `typedef struct { ... } cname;` in declaration order."""
    m = re.search(r"typedef struct\s*\{([^{}]*)\}\s*" + cname + r"\s*;", text)
    assert m, f"{cname} not found in ropekit.h"
    names = []
    for decl in m.group(1).split(";"):
        decl = decl.strip()
        if not decl:
            continue
        decl = re.sub(r"\[[^]]*\]", "", decl)            # char rope_type[16]
        first, *rest = decl.split(",")
        names.append(re.findall(r"(\w+)\s*$", first)[0])
        names += [r.strip().lstrip("*").strip() for r in rest]
    return names


def test_field_names_in_header_order():
    text = open(HEADER).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    for cname, st in STRUCTS.items():
        assert header_fields(text, cname) == [f for f, _ in st._fields_], cname


def test_enum_values(tmp_path):
    body = "".join(f'    printf("{n} %lld\\n", (long long){n});\n' for n in ENUMS)
    out = compile_and_run(tmp_path, body)
    got = {n: int(v) for n, v in (line.split() for line in out.splitlines())}
    assert got == ENUMS


def test_all_keys_and_version(tmp_path):
    out = compile_and_run(tmp_path, '    printf("%zu %s\\n", (size_t)RK_ALL_KEYS, RK_VERSION);\n')
    all_keys, version = out.split()
    assert int(all_keys) == _lib.ALL_KEYS
    assert version == _lib.__version__ == _lib.LIBRARY_VERSION


def test_pyproject_version():
    text = open(os.path.join(ROOT, "python", "pyproject.toml")).read()
    assert re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1) == _lib.__version__


@pytest.mark.parametrize("name", sorted(_lib.PROTOTYPES))
def test_prototypes_are_declared_in_the_header(name):
    # every function bound is public API (declared in the header, exported by the library)
    text = open(HEADER).read()
    assert re.search(r"\b" + name + r"\s*\(", text), name


def test_every_enum_constant_is_known():
    # a constant added to the header (a new kind, scaling, error code ...) must be added here
    text = re.sub(r"/\*.*?\*/", "", open(HEADER).read(), flags=re.S)
    names = set()
    for body in re.findall(r"\benum\s*\{(.*?)\}", text, flags=re.S):
        for item in body.split(","):
            m = re.match(r"\s*(RK_\w+)", item)
            if m:
                names.add(m.group(1))
    # not bound: the .npy API's dtypes (NumPy reads and writes .npy itself)
    names -= {"RK_OK", "RK_NERRORS", "RK_F32", "RK_F64"}
    assert names and names <= set(ENUMS), sorted(names - set(ENUMS))
