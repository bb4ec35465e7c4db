"""The test harness the sandboxed interpreter runs (standard library only; never imported by the
judge's own process except to transform tests in unit tests).

``python -I -B harness.py JOB_FD PROOF_FD``:

1. reads the job (a random nonce, setup, code, tests) from JOB_FD, a file outside the jail, and
   closes it before any untrusted code exists (the program cannot read the tests or the nonce
   from disk);
2. parses every test block and rewrites it (``Checks``): each ``assert`` becomes a call into this
   harness, which converts the values compared to plain built-in values (exactly ``int``, ``str``,
   ``list``...; a subclass of one becomes its base value, read by the base type's own C code) and
   compares those itself, so an object whose ``__eq__`` is always true, an ``int`` subclass that
   lies, or a patched ``builtins.AssertionError`` decides nothing; comparisons, truth tests and the
   results of calls anywhere in the tests go through the same checks;
3. runs the setup, then the candidate code, then each test block, in one namespace;
4. checks that the builtins and the standard modules it loaded were not rebound by the program;
5. only then writes ``{"nonce", "status": "passed", "checks": n}`` to PROOF_FD.

The judge counts a pass only on that record with its nonce: a program that leaves early
(``sys.exit``, ``os._exit``, a signal, closing stdout) or makes a check fail never produces it.
Code in the same process can in principle dig the nonce out of this harness's memory (frames,
``gc``); that takes a deliberate attack on this file, which no test trick does by accident.
"""

from __future__ import annotations

import ast
import builtins
import json
import operator
import os
import sys
import traceback
import types

PLAIN_ATOMS = (type(None), bool, int, float, complex, str, bytes)
_BASES = ((bool, bool), (int, int.__int__), (float, float.__float__), (complex, complex.__complex__),
          (str, str.__str__), (bytes, bytes.__bytes__), (tuple, lambda v: tuple.__getitem__(v, slice(None))),
          (list, list.copy), (dict, dict.copy), (frozenset, frozenset.copy), (set, set.copy))
_MAX_DEPTH = 200
_VALUE_DUNDERS = frozenset(
    "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __bool__ __len__ __contains__ __hash__ __abs__ __neg__ __pos__ "
    "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ __rfloordiv__ "
    "__mod__ __rmod__ __pow__ __rpow__ __int__ __float__ __index__ __round__ __complex__ __and__ __or__ "
    "__xor__ __rand__ __ror__ __rxor__ __invert__ __lshift__ __rshift__ __matmul__ __trunc__ __floor__ "
    "__ceil__".split())
_HEAPTYPE = 1 << 9
_gettrace, _getprofile = sys.gettrace, sys.getprofile
PRELOAD = ("math", "cmath", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
           "operator", "typing", "decimal", "fractions", "statistics", "random", "copy", "json")


class NonPlain(Exception):
    """A value the judge cannot compare safely (it is not made of plain built-in values)."""


def plain(value, depth=0):
    """``value`` as exact built-in values, recursively, or NonPlain."""
    t = type(value)
    if t in PLAIN_ATOMS:
        return value
    if depth > _MAX_DEPTH:
        raise NonPlain("nested too deeply")
    if t is list or t is tuple or t is set or t is frozenset:
        return t(plain(v, depth + 1) for v in value)
    if t is dict:
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in value.items()}
    for base, read in _BASES:
        if isinstance(value, base):  # a subclass: the base type's own value, not its overrides
            return plain(read(value), depth + 1)
    raise NonPlain(f"a {t.__module__}.{t.__qualname__} object")


def _static(t) -> bool:
    return not (t.__flags__ & _HEAPTYPE)


class Checks:
    """The harness functions the rewritten tests call; counts checks and remembers a failure."""

    names = ("__sa_assert__", "__sa_cmp__", "__sa_val__", "__sa_ret__")

    def __init__(self, trusted_types) -> None:
        self.count = 0
        self.failure = None
        self.trusted_types = trusted_types
        self.assertion_error = AssertionError

    def functions(self) -> dict:
        return dict(zip(self.names, (self.check_assert, self.compare, self.value, self.returned)))

    def fail(self, why: str):
        if self.failure is None:
            self.failure = why
        return self.assertion_error(why)

    def value(self, v):
        """A value used for its truth (or returned by ``and``/``or``): plain, or of a C type."""
        try:
            return plain(v)
        except NonPlain as e:
            if _static(type(v)):
                return v
            raise self.fail(f"the tests got {e}, which the judge does not compare") from None

    def returned(self, v):
        """A call's result: refused when it is an object whose class overrides comparison or arithmetic."""
        t = type(v)
        if t in PLAIN_ATOMS or _static(t) or t in self.trusted_types:
            return v
        for klass in t.__mro__:
            if _static(klass) or klass in self.trusted_types:
                break
            bad = _VALUE_DUNDERS.intersection(vars(klass))
            if bad:
                try:
                    return plain(v)
                except NonPlain:
                    raise self.fail(f"a call returned a {t.__qualname__} object, whose class defines "
                                    f"{', '.join(sorted(bad))}; the judge compares plain values only") from None
        return v

    def untraced(self) -> None:
        if _gettrace() is not None or _getprofile() is not None:
            raise self.fail("the program installed a trace or profile function")

    def compare(self, ops, *operands):
        """``operands[0] ops[0] operands[1] ...`` evaluated on plain values (identity on the objects)."""
        self.untraced()
        for op, left, right in zip(ops, operands, operands[1:]):
            if op == "is":
                ok = left is right
            elif op == "is not":
                ok = left is not right
            else:
                try:
                    a, b = plain(left), plain(right)
                except NonPlain as e:
                    raise self.fail(f"the tests compare {e}; the judge compares plain values only") from None
                ok = _COMPARE[op](a, b)
            if not ok:
                return False
        return True

    def check_assert(self, where: str, v) -> None:
        self.untraced()
        self.count += 1
        if not self.value(v):
            raise self.fail(f"AssertionError: {where}")


_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge, "in": lambda a, b: a in b, "not in": lambda a, b: a not in b}


_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
        ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}


def _call(name: str, *args) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), list(args), [])


class _Rewrite(ast.NodeTransformer):
    """Asserts, comparisons, truth tests and call results of the test code go through ``Checks``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def visit_Assert(self, node):
        where = (ast.get_source_segment(self.source, node) or "assert")[:300]
        test = _call("__sa_assert__", ast.Constant(where), self.visit(node.test))
        return ast.copy_location(ast.Expr(test), node)

    def visit_Compare(self, node):
        self.generic_visit(node)
        ops = ast.Tuple([ast.Constant(_OPS[type(o)]) for o in node.ops], ast.Load())
        return ast.copy_location(_call("__sa_cmp__", ops, node.left, *node.comparators), node)

    def visit_Call(self, node):
        self.generic_visit(node)
        return ast.copy_location(_call("__sa_ret__", node), node)

    def _truth(self, node):
        node = self.generic_visit(node)
        node.test = _call("__sa_val__", node.test)
        return node

    visit_If = visit_While = visit_IfExp = _truth

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        node.values = [_call("__sa_val__", v) for v in node.values]
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            node.operand = _call("__sa_val__", node.operand)
        return node

    def visit_comprehension(self, node):
        self.generic_visit(node)
        node.ifs = [_call("__sa_val__", c) for c in node.ifs]
        return node


def rewrite_tests(source: str, filename: str = "<tests>"):
    tree = ast.fix_missing_locations(_Rewrite(source).visit(ast.parse(source, filename)))
    return compile(tree, filename, "exec")


def _snapshot(modules) -> dict:
    return {name: dict(vars(mod)) for name, mod in modules.items()}


def _tampered(snapshot, modules) -> str | None:
    for name, before in snapshot.items():
        now = vars(modules[name])
        for key, obj in before.items():
            if key not in ("__loader__", "__spec__", "__builtins__") and now.get(key, obj) is not obj:
                return f"{name}.{key}"
    return None


def _reporter(nonce: str, proof_fd: int):
    """The only holder of the nonce: writes the harness's record to the proof pipe."""
    write, dumps = os.write, json.dumps

    def report(status: str, reason: str = "", checks: int = 0) -> None:
        try:
            write(proof_fd, (dumps({"nonce": nonce, "status": status, "reason": reason[:2000],
                                    "checks": checks}) + "\n").encode())
        except OSError:
            pass

    return report


def main() -> None:
    exit_now = os._exit
    real_builtins = dict(vars(builtins))
    with os.fdopen(int(sys.argv[1]), "r", encoding="utf-8") as f:  # closed before any untrusted code runs
        job = json.load(f)
    write_record = _reporter(job.pop("nonce"), int(sys.argv[2]))

    def report(status: str, reason: str = "", checks: int = 0) -> None:
        vars(builtins).update(real_builtins)  # json and traceback need the real ones
        write_record(status, reason, checks)
    try:
        blocks = [rewrite_tests(t, f"<test {i + 1}>") for i, t in enumerate(job["tests"])]
    except SyntaxError as e:
        report("failed", f"the tests do not parse: {e}")
        exit_now(1)
    for name in PRELOAD:
        __import__(name)
    modules = {name: sys.modules[name] for name in ("builtins", "os", *PRELOAD)}
    trusted = {v for m in modules.values() for v in vars(m).values() if isinstance(v, type)}
    checks = Checks(frozenset(trusted))
    harness = checks.functions()
    snapshot = _snapshot(modules)
    module = types.ModuleType("__candidate__")  # a real module: dataclasses, pickle... look it up
    sys.modules[module.__name__] = module
    namespace = vars(module)
    namespace["__builtins__"] = builtins
    stage = "setup"
    try:
        exec(compile(job["setup"], "<setup>", "exec"), namespace)
        stage = "code"
        exec(compile(job["code"], "<candidate>", "exec"), namespace)
        stage = "tests"
        for block in blocks:
            namespace.update(harness)
            namespace["__builtins__"] = builtins
            exec(block, namespace)
            if any(namespace.get(k) is not f for k, f in harness.items()):
                raise checks.fail("the program replaced the judge's check functions")
    except SystemExit as e:
        report("failed", f"the program exited before the tests finished (SystemExit: {e.code!r}, in {stage})",
               checks.count)
        exit_now(1)
    except BaseException as e:  # noqa: BLE001 - anything the program raises fails it
        vars(builtins).update(real_builtins)
        reason = checks.failure or "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()[-1]
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
        report("failed", reason, checks.count)
        exit_now(1)
    bad = _tampered(snapshot, modules)
    if checks.failure or bad:
        report("failed", checks.failure or f"the program rebound {bad}", checks.count)
        exit_now(1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    report("passed", "", checks.count)
    exit_now(0)


if __name__ == "__main__":
    main()
