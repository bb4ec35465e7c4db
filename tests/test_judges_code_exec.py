"""The code-execution sandbox: each hostile program fails its sample and leaves the host alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from selfaug_compiler.judges.code_exec import MAX_PROCESSES, process_limit_enforced, run_tests
from selfaug_compiler.judges.exec_harness import NonPlain, plain

GOOD = "def add(a, b):\n    return a + b\n"


def test_correct_solution_passes_and_wrong_fails():
    ok = run_tests(GOOD, ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"])
    assert ok.passed and ok.reason == "passed"
    bad = run_tests("def add(a, b):\n    return a - b\n", ["assert add(1, 2) == 3"])
    assert not bad.passed and "AssertionError" in bad.reason


def test_setup_code_runs_first():
    assert run_tests("def f():\n    return HELPER * 2\n", ["assert f() == 42"], setup="HELPER = 21").passed


def test_infinite_loop_times_out():
    start = time.perf_counter()
    res = run_tests("while True:\n    pass\n", [], timeout_s=1.5)
    assert not res.passed and res.reason in ("timeout", "cpu time limit")
    assert time.perf_counter() - start < 10


def test_fork_bomb_is_contained():
    code = (
        "import os, sys\n"
        "made = 0\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            import time; time.sleep(60); os._exit(0)\n"
        "        made += 1\n"
        "    except OSError:\n"
        "        break\n"
        "print('forked', made, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    start = time.perf_counter()
    res = run_tests(code, [], timeout_s=2)
    assert not res.passed and time.perf_counter() - start < 15
    if process_limit_enforced():
        made = int(res.stdout.split()[1])
        assert made < MAX_PROCESSES


def test_huge_allocation_fails_without_harm():
    res = run_tests("x = bytearray(8 * 1024 ** 3)\n", [], memory_mb=256)
    assert not res.passed and res.reason == "memory limit"


def test_write_outside_workdir_is_blocked(tmp_path):
    target = tmp_path / "escaped.txt"
    res = run_tests(f"open({str(target)!r}, 'w').write('pwned')\n", [])
    assert not res.passed
    assert not target.exists()
    # writing inside the throw-away working dir is fine and leaves nothing behind
    assert run_tests("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'", []).passed


def test_network_is_unreachable():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    arrived: list[object] = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                arrived.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'hi')\n"
        res = run_tests(code, [], timeout_s=4)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
        server.close()
    assert not res.passed
    assert arrived == []


def test_output_is_captured_and_workdir_removed():
    before = set(Path(tempfile.gettempdir()).glob("selfaug-exec-*"))
    res = run_tests("import os\nprint(os.getcwd())\n", [])
    assert res.passed and res.stdout.strip() == "/sandbox"
    assert set(Path(tempfile.gettempdir()).glob("selfaug-exec-*")) <= before


def test_a_pass_needs_every_test_block_to_finish():
    res = run_tests(GOOD, ["assert add(1, 2) == 3", "import sys\nsys.exit(0)", "assert add(2, 2) == 5"])
    assert not res.passed and "exited before the tests finished" in res.reason
    ok = run_tests(GOOD, ["def check(candidate):\n    for i in range(5):\n        assert candidate(i, 1) == i + 1\n",
                          "check(add)"])
    assert ok.passed and ok.checks == 5


def test_plain_values():
    from collections import Counter, OrderedDict

    assert plain(Counter("aab")) == {"a": 2, "b": 1} and type(plain(Counter("aab"))) is dict
    assert type(plain(OrderedDict(a=[1, (2, {3})]))["a"][1][1]) is set

    class Liar(int):
        def __eq__(self, other):
            return True

    class Always:
        def __eq__(self, other):
            return True

    assert plain(Liar(0)) == 0 and type(plain(Liar(0))) is int and plain(Liar(0)) != 5
    with pytest.raises(NonPlain):
        plain([1, Always()])


def test_refuses_to_run_without_the_sandbox(tmp_path):
    """No bwrap on PATH: a SelfaugError naming bubblewrap, and the program never runs."""
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')"
    script = ("import sys\nfrom selfaug_compiler.errors import SelfaugError\n"
              "from selfaug_compiler.judges.code_exec import run_tests\n"
              f"try:\n    run_tests({code!r}, [])\n"
              "except SelfaugError as e:\n    print(e)\n    sys.exit(2)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "bubblewrap" in proc.stdout and "Traceback" not in proc.stderr
    assert not marker.exists()
