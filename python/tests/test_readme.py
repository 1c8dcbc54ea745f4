"""The README's Python example runs, from a clean directory, and prints what the README says
it prints."""
import os
import re
import subprocess
import sys

from conftest import PYDIR, ROOT


def python_section():
    text = open(os.path.join(ROOT, "README.md")).read()
    return text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]


def test_readme_example_prints_what_the_readme_shows(tmp):
    sec = python_section()
    m = re.search(r"```python\n(.*?)```\s*```text\n(.*?)```", sec, re.S)
    assert m, "the Python section has no ```python block followed by its ```text output"
    code, shown = m.group(1), m.group(2)
    assert len(code.strip().splitlines()) <= 14
    env = dict(os.environ, PYTHONPATH=PYDIR)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == shown


def test_readme_names_the_functions_that_exist():
    import ropekit
    sec = python_section()
    for name in re.findall(r"`ropekit\.(\w+)", sec):
        assert hasattr(ropekit, name), name
