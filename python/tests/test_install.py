"""Installation: `make install PREFIX=...` puts the package beside the library, and a clean
environment imports it from there; `pip install ./python` offline (no index, no build
isolation) into a virtual environment finds the library through ROPEKIT_LIBRARY or the
soname."""
import os
import shutil
import subprocess
import sys

import numpy as np

from conftest import BUILD, PYDIR, ROOT, assert_bits, randn
import ropekit

SONAME = "libropekit.so.0"
PYVER = "%d.%d" % sys.version_info[:2]
SNIPPET = ("import numpy as np, ropekit, sys; q = np.load(sys.argv[1]); "
           "np.save(sys.argv[2], ropekit.attend(q, q, q, 'performer', causal=True)); "
           "print(ropekit.library_path, ropekit.library_found_by, sep='|')")


def tool_env():
    """For make and pip: no make jobserver or command-line variables of the outer make, no
    sanitizer runtime preloaded."""
    return {k: v for k, v in os.environ.items()
            if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "LD_PRELOAD")}


def clean_env(**extra):
    """A bare environment (what a new shell of a user has), keeping only a sanitizer runtime
    the library of this build may need."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(extra.pop("HOME", "/nonexistent")),
           "LC_ALL": "C.UTF-8"}
    for k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_snippet(python, env, tmp):
    q = randn((2, 9, 8), np.float32, seed=50)
    np.save(tmp / "q.npy", q)
    p = subprocess.run([python, "-c", SNIPPET, tmp / "q.npy", tmp / "o.npy"], env=env, cwd=tmp,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert_bits(np.load(tmp / "o.npy"), ropekit.attend(q, q, q, "performer", causal=True))
    return p.stdout.strip().split("|")


def test_make_install_then_import_from_a_clean_environment(tmp):
    prefix = tmp / "prefix"
    build = os.path.relpath(BUILD, ROOT) if BUILD.startswith(ROOT + os.sep) else BUILD
    p = subprocess.run(["make", "-s", "-C", ROOT, "install", f"PREFIX={prefix}",
                        f"BUILD={build}", f"PYTHON={sys.executable}"], env=tool_env(),
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    site = prefix / "lib" / f"python{PYVER}" / "dist-packages"
    for f in os.listdir(os.path.join(PYDIR, "ropekit")):
        if f.endswith(".py"):
            assert (site / "ropekit" / f).is_file(), f
    assert (site / "ropekit" / "_install.py").read_text().count(repr(str(prefix / "lib"))) == 1
    real = os.path.realpath(prefix / "lib" / SONAME)
    path, how = run_snippet(sys.executable, clean_env(PYTHONPATH=site), tmp)
    assert (path, how) == (real, "installed with the package")
    # the module entry point from there too
    p = subprocess.run([sys.executable, "-m", "ropekit"], env=clean_env(PYTHONPATH=site),
                       cwd=tmp, capture_output=True, text=True, check=True)
    assert p.stdout.splitlines()[1] == f"library: {real} (found: installed with the package)"
    # a staged install (DESTDIR) records the final prefix, not the staging directory
    stage = tmp / "stage"
    subprocess.run(["make", "-s", "-C", ROOT, "install", "PREFIX=/opt/rk", f"DESTDIR={stage}",
                    f"BUILD={build}", f"PYTHON={sys.executable}"], env=tool_env(), check=True,
                   capture_output=True)
    text = (stage / "opt/rk/lib" / f"python{PYVER}" / "dist-packages/ropekit/_install.py")
    assert "LIBDIR = '/opt/rk/lib'" in text.read_text()


def test_pip_install_offline_into_a_venv(tmp):
    src = tmp / "src"
    shutil.copytree(PYDIR, src, ignore=shutil.ignore_patterns("__pycache__", "tests", "build",
                                                              "*.egg-info", "_install.py"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    venv], check=True, env=tool_env())
    py = str(venv / "bin" / "python")
    p = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        "--no-cache-dir", "--disable-pip-version-check", "-q", src],
                       env=dict(tool_env(), HOME=str(tmp)), cwd=tmp, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    site = venv / "lib" / f"python{PYVER}" / "site-packages" / "ropekit"
    assert (site / "__init__.py").is_file() and not (site / "_install.py").exists()
    lib = os.path.join(BUILD, SONAME)
    path, how = run_snippet(py, clean_env(ROPEKIT_LIBRARY=lib), tmp)
    assert (path, how) == (os.path.realpath(lib), "ROPEKIT_LIBRARY")
    path, how = run_snippet(py, clean_env(LD_LIBRARY_PATH=BUILD), tmp)
    assert (path, how) == (os.path.realpath(lib), "the dynamic linker (installed soname)")
