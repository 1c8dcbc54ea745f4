"""python3 -m ropekit (the version as `ropekit --version`, and where the library was found),
and how the library is found: ROPEKIT_LIBRARY, beside the package, the source tree's build/,
the installed soname."""
import os
import shutil
import subprocess
import sys

import pytest

import ropekit
from conftest import BUILD, PYDIR, ROOT, cli

SONAME = "libropekit.so.0"


def child_env(**extra):
    """This process's environment without ROPEKIT_LIBRARY / PYTHONPATH, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ROPEKIT_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_main(env, cwd, args=()):
    return subprocess.run([sys.executable, "-m", "ropekit"] + list(args), env=env, cwd=cwd,
                          capture_output=True, text=True, check=False)


def test_main_prints_the_version_and_the_library(tmp):
    env = child_env(ROPEKIT_LIBRARY=os.path.join(BUILD, SONAME), PYTHONPATH=PYDIR)
    version = cli(["--version"]).stdout
    for args in ((), ("--version",)):
        p = run_main(env, tmp, args)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0] + "\n" == version
        real = os.path.realpath(os.path.join(BUILD, SONAME))
        assert lines[1] == f"library: {real} (found: ROPEKIT_LIBRARY)"
    p = run_main(env, tmp, ["--bogus"])
    assert p.returncode == 2 and "usage: python3 -m ropekit" in p.stderr
    p = run_main(env, tmp, ["--help"])
    assert p.returncode == 0 and "usage" in p.stdout


def test_in_process_attributes():
    assert ropekit.library_version() == ropekit.__version__
    assert os.path.isfile(ropekit.library_path)
    assert ropekit.isa_resolve() in ("portable", "avx2", "avx512")
    assert ropekit.isa_available("portable") and ropekit.isa_available("auto")
    with pytest.raises(ValueError, match="isa"):
        ropekit.isa_available("sse2")


def test_bad_ropekit_library(tmp):
    for path, match in ((tmp / "absent.so", "no such file"),
                        (os.path.join(ROOT, "README.md"), "README.md")):
        env = child_env(ROPEKIT_LIBRARY=path, PYTHONPATH=PYDIR)
        p = run_main(env, tmp)
        assert p.returncode == 2 and f"ROPEKIT_LIBRARY={path}" in p.stderr and \
            match in p.stderr, p.stderr
        p = subprocess.run([sys.executable, "-c", "import ropekit"], env=env, cwd=tmp,
                           capture_output=True, text=True, check=False)
        assert p.returncode == 1 and "ImportError" in p.stderr


def copy_package(dst):
    shutil.copytree(os.path.join(PYDIR, "ropekit"), os.path.join(dst, "ropekit"),
                    ignore=shutil.ignore_patterns("__pycache__", "_install.py"))


def found(p):
    assert p.returncode == 0, p.stderr
    line = p.stdout.splitlines()[1]
    path, how = line[len("library: "):].split(" (found: ")
    assert how.endswith(")")
    return path, how[:-1]


def test_found_in_the_source_tree(tmp):
    lib = os.path.join(ROOT, "build", SONAME)
    if not os.path.exists(lib):
        pytest.skip(f"no {lib} (the source tree's plain build)")
    path, how = found(run_main(child_env(PYTHONPATH=PYDIR), tmp))
    assert (path, how) == (os.path.realpath(lib), "the build tree")


def test_found_beside_the_package(tmp):
    copy_package(tmp)
    shutil.copy(os.path.join(BUILD, SONAME), tmp / "ropekit" / SONAME)
    path, how = found(run_main(child_env(PYTHONPATH=tmp), tmp))
    assert (path, how) == (str(tmp / "ropekit" / SONAME), "beside the package")


def test_found_through_the_dynamic_linker(tmp):
    copy_package(tmp)
    path, how = found(run_main(child_env(PYTHONPATH=tmp, LD_LIBRARY_PATH=BUILD), tmp))
    assert how == "the dynamic linker (installed soname)"
    assert path == os.path.realpath(os.path.join(BUILD, SONAME))


def test_not_found(tmp):
    copy_package(tmp)
    p = run_main(child_env(PYTHONPATH=tmp), tmp)
    if p.returncode == 0:                   # installed system-wide (ldconfig knows it)
        assert found(p)[1] == "the dynamic linker (installed soname)"
        return
    assert p.returncode == 2 and "cannot find the C library libropekit.so.0" in p.stderr
    assert "ROPEKIT_LIBRARY" in p.stderr and "make install" in p.stderr
