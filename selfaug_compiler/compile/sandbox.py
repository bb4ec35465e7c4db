"""The bounded jinja2 sandbox every template of a recipe is rendered in (validate and the steps).

jinja2's ``SandboxedEnvironment`` stops attribute tricks (``__class__``, ``__globals__``) but not
work: ``{{ 9**99999999 }}`` or ``{{ 'x' * 10**10 }}`` hang or exhaust memory inside one C call,
and loops (``range`` allows 100,000 items, loops nest) can run for hours. ``GuardedEnvironment``
bounds every way a template can make work, at its root:

* values: ``**``, ``*``, ``+``, ``%`` and ``~`` check the size of their result *before* computing
  it (text and lists at most ``MAX_OUTPUT_CHARS`` items, integers at most ``MAX_INT_BITS`` bits);
  widths in ``%``/``format`` specs, integer arguments of calls and filters (``center``,
  ``indent``, ``slice``, ``str.ljust`` ...) are at most ``MAX_OUTPUT_CHARS``; ``replace``,
  ``join``, ``indent`` and ``expandtabs`` estimate their result first; lists and dicts are
  immutable (``ImmutableSandboxedEnvironment``); ``lipsum`` is gone;
* output: a render (and each block or macro body) stops at ``MAX_OUTPUT_CHARS`` characters;
* time: compiling and rendering one template stops after ``RENDER_SECONDS`` (checked on every
  line of template code and every Python call it makes);
* source: a template file holds at most ``MAX_TEMPLATE_BYTES`` of UTF-8 text.

A limit raises ``TemplateLimit`` (a jinja2 ``SecurityError``, so callers that handle
``TemplateError`` report it); any other failure inside a render becomes a ``TemplateError`` too.
"""

from __future__ import annotations

import functools
import string
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from jinja2 import TemplateError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template
from jinja2.exceptions import TemplateRuntimeError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_OUTPUT_CHARS = 1_000_000
MAX_INT_BITS = 10_000  # about 3,000 digits
MAX_TEMPLATE_BYTES = 256 * 1024
RENDER_SECONDS = 1.0
_CODE_FILE = "<template>"  # co_filename of code compiled from a string
# integer arguments that set a size: a filter or str method given one above MAX_OUTPUT_CHARS is refused
_SIZED_FILTERS = frozenset({"center", "indent", "slice", "batch", "wordwrap", "truncate"})
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class TemplateLimit(SecurityError):
    """A template asked for more work than the limits allow."""


class TemplateFailed(TemplateRuntimeError):
    """A Python error (TypeError, RecursionError, ...) inside a template, as a TemplateError."""


def _refuse(what: str) -> TemplateLimit:
    return TemplateLimit(f"template refused: {what}")


# ----------------------------------------------------------------------------- size checks
def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
        raise _refuse(f"{what} {_short(value)} is above {MAX_OUTPUT_CHARS:,}")


def _short(value: int) -> str:
    return str(value) if value.bit_length() < 64 else f"of {value.bit_length():,} bits"


def _check_result_size(value: Any) -> Any:
    length = _length(value)
    if length is not None and length > MAX_OUTPUT_CHARS:
        raise _refuse(f"a value of {length:,} items (the limit is {MAX_OUTPUT_CHARS:,})")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _refuse(f"an integer of {value.bit_length():,} bits (the limit is {MAX_INT_BITS:,})")
    return value


def _check_binop(op: str, left: Any, right: Any) -> None:
    ints = all(isinstance(v, int) for v in (left, right))
    if op == "**" and ints and right > 0 and abs(left) > 1 and right * abs(left).bit_length() > MAX_INT_BITS:
        raise _refuse(f"`**` would make an integer of about {right * abs(left).bit_length():,} bits "
                      f"(the limit is {MAX_INT_BITS:,})")
    if op == "*":
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _refuse(f"`*` would make an integer of more than {MAX_INT_BITS:,} bits")
        for seq, times in ((left, right), (right, left)):
            if _length(seq) is not None and isinstance(times, int) and len(seq) * times > MAX_OUTPUT_CHARS:
                raise _refuse(f"`*` would repeat {len(seq):,} items {_short(times)} times "
                              f"(the limit is {MAX_OUTPUT_CHARS:,})")
    if op == "+" and _length(left) is not None and _length(right) is not None:
        _check_total(len(left) + len(right), "`+`")
    if op == "%" and isinstance(left, str):
        _check_percent_format(left, right)


def _check_total(total: int, what: str) -> None:
    if total > MAX_OUTPUT_CHARS:
        raise _refuse(f"{what} would make {total:,} characters (the limit is {MAX_OUTPUT_CHARS:,})")


def _digit_runs(spec: str) -> list[int]:
    runs, current = [], ""
    for ch in spec + " ":
        if ch.isdigit():
            current += ch
        elif current:
            runs.append(int(current) if len(current) < 20 else 10**20)
            current = ""
    return runs


def _check_percent_format(fmt: str, args: Any) -> None:
    """``'%0999999999d' % 1`` and ``'%*d' % (10**9, 1)`` allocate before they could be measured."""
    if any(n > MAX_OUTPUT_CHARS for n in _digit_runs(fmt)):
        raise _refuse(f"a `%` format width above {MAX_OUTPUT_CHARS:,}")
    if "*" in fmt:
        for value in args if isinstance(args, tuple) else (args,):
            _check_int(value, "a `%*` width")


def _check_format_spec(fmt: str, args: tuple, kwargs: dict) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format reports the malformed string itself
    for _, _, spec, _ in fields:
        if spec and any(n > MAX_OUTPUT_CHARS for n in _digit_runs(spec)):
            raise _refuse(f"a format width above {MAX_OUTPUT_CHARS:,}")
        if spec and "{" in spec:  # nested width from the arguments: '{:{}}'.format(1, 10**9)
            for value in [*args, *kwargs.values(), *(v for a in args if isinstance(a, dict) for v in a.values())]:
                _check_int(value, "a nested format width")


def _estimate_growth(name: str, value: Any, args: tuple, kwargs: dict) -> None:
    """Methods and filters whose result can be far larger than their inputs."""
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = value.count(old) if old else len(value) + 1
        _check_total(len(value) + count * max(0, len(new) - len(old)), "`replace`")
    elif name == "join" and isinstance(value, str) and args and isinstance(args[0], (list, tuple, str)):
        _check_total(len(value) * len(args[0]) + _text_size(args[0]), "`join`")
    elif name == "expandtabs" and isinstance(value, str):
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _check_total(len(value) + value.count("\t") * size, "`expandtabs`")
    elif name == "indent" and isinstance(value, str):
        width = args[0] if args else kwargs.get("width", 4)
        width = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _check_total(len(value) + (value.count("\n") + 1) * width, "`indent`")


def _text_size(items: list | tuple | str) -> int:
    """Characters of the items as text (no Python-level loop: the render deadline traces those)."""
    return len(items) if isinstance(items, str) else sum(map(len, map(str, items)))


def _check_args(name: str, args: tuple, kwargs: dict) -> None:
    for value in (*args, *kwargs.values()):
        _check_int(value, f"an argument of `{name}`")


def _materialized(value: Any) -> Any:
    """An iterable as a list, so that its size can be checked before it is joined."""
    return value if isinstance(value, (list, tuple, str)) or not hasattr(value, "__iter__") else list(value)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja's pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        first = next((i for i, a in enumerate(args) if not _is_jinja_object(a)), len(args))
        if name == "join" and first < len(args):
            args = (*args[:first], _materialized(args[first]), *args[first + 1:])
        value, rest = (args[first], tuple(args[first + 1:])) if first < len(args) else (None, ())
        if name in _SIZED_FILTERS:
            _check_args(name, rest, kwargs)
        if name == "join" and isinstance(value, (list, tuple, str)):
            sep = rest[0] if rest else kwargs.get("d", "")
            _check_total(len(str(sep)) * len(value) + _text_size(value), "`join`")
        elif name == "format" and isinstance(value, str):
            _check_percent_format(value, rest)
        else:
            _estimate_growth(name, value, rest, kwargs)
        return _check_result_size(func(*args, **kwargs))

    return guarded


def _is_jinja_object(value: Any) -> bool:
    from jinja2.environment import Environment
    from jinja2.nodes import EvalContext
    from jinja2.runtime import Context

    return isinstance(value, (Environment, EvalContext, Context))


# ----------------------------------------------------------------------------- time
@contextmanager
def deadline(seconds: float = RENDER_SECONDS) -> Iterator[None]:
    """Stop template code that runs longer than ``seconds``: checked on each line of compiled
    template code and on each Python call made while it runs (C calls are bounded by size)."""
    end = time.monotonic() + seconds
    previous = sys.gettrace()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > end:
            sys.settrace(None)
            raise _refuse(f"rendering took longer than {seconds:g} s (a loop or recursion too large?)")
        return tracer if frame.f_code.co_filename == _CODE_FILE else None

    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)


def _as_template_error(exc: BaseException) -> TemplateError:
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, RecursionError):
        return _refuse("nesting or recursion too deep (a macro calling itself?)")
    return TemplateFailed(f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- environment
class GuardedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            return super().visit_Concat(node, frame)
        self.write("environment.guarded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class GuardedTemplate(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        try:
            with deadline():
                return super().render(*args, **kwargs)
        except Exception as exc:
            raise _as_template_error(exc) from None


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    code_generator_class = GuardedCodeGenerator
    template_class = GuardedTemplate
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.concat = self.capped_join  # type: ignore[method-assign]

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Template:
        if isinstance(source, str) and len(source) > MAX_TEMPLATE_BYTES:
            raise _refuse(f"the template is {len(source):,} characters (the limit is {MAX_TEMPLATE_BYTES:,})")
        try:
            with deadline():
                return super().from_string(source, globals, template_class)
        except Exception as exc:
            raise _as_template_error(exc) from None

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _check_result_size(self.binop_table[operator](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", type(__obj).__name__)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            if name in _SIZED_METHODS:
                _check_args(name, args, kwargs)
            if name == "join" and args:
                args = (_materialized(args[0]), *args[1:])
            _estimate_growth(name, owner, args, kwargs)
        return _check_result_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__

        @functools.wraps(wrapper)
        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_spec(fmt, args, kwargs)
            return _check_result_size(wrapper(*args, **kwargs))

        return checked

    @staticmethod
    def guarded_concat(parts: tuple[Any, ...]) -> str:
        texts = [str(p) for p in parts]
        _check_total(sum(map(len, texts)), "`~`")
        return "".join(texts)

    @staticmethod
    def capped_join(chunks: Any) -> str:
        out, size = [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise _refuse(f"output longer than {MAX_OUTPUT_CHARS:,} characters")
            out.append(chunk)
        return "".join(out)


class GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` (transformers' assistant-mask marker) renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def prompt_environment() -> GuardedEnvironment:
    """Prompt templates: a variable the executor does not pass is an error (StrictUndefined)."""
    from jinja2 import StrictUndefined

    return GuardedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False,
                              trim_blocks=True, lstrip_blocks=True, autoescape=False)


def chat_environment() -> GuardedEnvironment:
    """Chat templates, configured as transformers renders them (loop controls, lenient undefined)."""
    env = GuardedEnvironment(undefined=Undefined, trim_blocks=True, lstrip_blocks=True, autoescape=False,
                             extensions=[GenerationTag, loopcontrols])

    def raise_exception(message: str) -> None:
        raise TemplateFailed(f"the template raised: {message}")

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: time.strftime(str(fmt)[:100])
    return env
