"""Hostile templates and paths (issue 10, classes 2-3): work bombs in prompt and chat templates,
sandbox escapes, files outside the recipe's project, file contents in messages.

Each case runs the real CLI in a subprocess (``recipe_cli``): exit 2, no traceback, within the
time limit, the cause named, and the secret file next to the project never printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from selfaug_compiler.compile.sandbox import prompt_environment
from tests.hostile.recipe_cli import BASE, SECRET, assert_refused, project, selfaug, write

PACKAGED_MODEL = 'model: {ref: "packaged:smollm2-135m-instruct"}'


def with_chat_template(path: str) -> str:
    """BASE with its model section naming a chat template file."""
    assert PACKAGED_MODEL in BASE
    return BASE.replace(PACKAGED_MODEL, PACKAGED_MODEL[:-1] + f", chat_template: {path}}}")

SA_SFT = "augment: {method: sa_sft, template: %s}\n"
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# template source -> words the refusal must contain
BOMBS = {
    "{{ 9**99999999 }}": "`**` would make an integer",
    "{{ 99 ** 99 ** 99 }}": "`**` would make an integer",  # left to right: (99**99)**99
    "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}":
        "`*` would make an integer",
    "{{ 'a' * 10**9 }}": "`*` would repeat",
    "{{ [topic] * 999999999 }}": "`*` would repeat",
    "{{ range(99999)|list * 99999 }}": "`*` would repeat",
    "{{ range(10**9)|list }}": "Range too big",
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}": "longer than 1 s",
    "{% for i in range(99999) %}{% for j in range(99999) %}{{ i }}{% endfor %}{% endfor %}": "template refused",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}": "template refused",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}": "recursion too deep",
    "{{ '%0999999999d' % 1 }}": "`%` format width",
    "{{ '%*d' % (999999999, 1) }}": "`%*` width",
    "{{ '%s%s' % (topic * 900000, topic * 900000) }}": "template refused",
    "{{ '%0999999999d'|format(1) }}": "`%` format width",
    "{{ '{:>999999999}'.format(1) }}": "format width above",
    "{{ '{:{}}'.format(1, 999999999) }}": "nested format width",
    "{{ topic|center(999999999) }}": "argument of `center`",
    "{{ topic.ljust(10**12) }}": "argument of `ljust`",
    "{{ topic|indent(999999999) }}": "argument of `indent`",
    "{{ [1, 2]|batch(999999999, 'x')|list }}": "argument of `batch`",
    "{% set s = 'a' * 999999 %}{{ s|replace('a', s) }}": "`replace` would make",
    "{% set s = 'a' * 999999 %}{{ s.replace('a', s) }}": "`replace` would make",
    "{% set s = 'a' * 999999 %}{{ s|join(s) }}": "`join` would make",
    "{{ ('\t' * 999999).expandtabs(999999) }}": "`expandtabs` would make",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}": "`~` would make",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x + ns.x %}{% endfor %}": "`+` would make",
    "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}": "too deep",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}": "unsafe",
    "{{ row.__class__.__init__.__globals__ }}": "unsafe",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}": "unsafe",
    "{{ lipsum(999999) }}": "'lipsum' is undefined",
    "{% set x = [] %}{{ x.append(1) }}": "unsafe",
    "{% include '../secret.txt' %}": "no loader",
    "{% import '/etc/passwd' as p %}": "no loader",
}


@pytest.mark.parametrize("source", list(BOMBS), ids=[f"bomb{i}" for i in range(len(BOMBS))])
def test_template_bombs_are_refused_at_validate(tmp_path: Path, source: str) -> None:
    proj = project(tmp_path)
    write(proj, "evil.j2", source)
    write(proj, "r.yaml", BASE + SA_SFT % "evil.j2")
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "augment.template", BOMBS[source])


@pytest.mark.parametrize("source", list(BOMBS)[:12], ids=[f"bomb{i}" for i in range(12)])
def test_every_render_path_is_bounded(source: str) -> None:
    """The steps render through the same environment (``sandboxed_environment``): bounded alike."""
    from jinja2 import TemplateError

    start = time.monotonic()
    with pytest.raises(TemplateError):
        prompt_environment().from_string(source).render(topic="cooking", row={})
    assert time.monotonic() - start < 3.0  # the render deadline is 1 s


def test_oversized_template(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "big.j2", "{{ topic }}" * 100_000)
    write(proj, "r.yaml", BASE + SA_SFT % "big.j2")
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "a template may have 262,144")


def test_the_guard_leaves_ordinary_templates_alone() -> None:
    source = (Path(__file__).parents[2] / "selfaug_compiler/templates/prompts/self_dialogue.j2").read_text()
    history = [{"role": "user", "content": "hi " * 300}, {"role": "assistant", "content": "ok " * 300}] * 4
    out = prompt_environment().from_string(source).render(topic="bread", turn=1, history=history)
    assert "bread" in out and out.count("User:") == 4
    assert prompt_environment().from_string("{{ '%5.1f'|format(2.25) }} {{ 2**10 }} {{ 'ab' * 3 }}").render() == \
        "  2.2 1024 ababab"


# ----------------------------------------------------------------------------- chat templates
@pytest.mark.parametrize("source,words", [
    ("{{ 9**99999999 }}", "`**` would make an integer"),
    ("{% for m in messages %}{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
     "{% endfor %}", "longer than 1 s"),
    ("{{ messages[0].content * 999999999 }}", "`*` would repeat"),
    ("{% for m in messages %}{{ m.content }}", "Unexpected end of template"),
    ("{{ raise_exception('this template needs a system message') }}", "needs a system message"),
    ("{{ messages.__class__.__base__.__subclasses__() }}", "unsafe"),
])
def test_chat_template_is_rendered_in_the_sandbox_at_validate(tmp_path: Path, source: str, words: str) -> None:
    proj = project(tmp_path)
    write(proj, "chat.j2", source)
    write(proj, "r.yaml", with_chat_template("chat.j2"))
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "model.chat_template", words)


def test_a_good_chat_template_validates(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "chat.j2", CHATML)
    write(proj, "r.yaml", with_chat_template("chat.j2"))
    result = selfaug("validate", "r.yaml", cwd=proj)
    assert result.code == 0, result.output


# ----------------------------------------------------------------------------- paths outside the project
OUTSIDE = [
    ("template", BASE + SA_SFT % "../secret.txt"),
    ("template", BASE + SA_SFT % "{secret}"),
    ("data file", BASE.replace("{kind: packaged, name: gsm8k}", "{kind: file, path: ../secret.txt}")),
    ("data file", BASE.replace("{kind: packaged, name: gsm8k}", "{kind: file, path: '{secret}'}")),
    ("topics file", BASE + "augment: {method: sa_sft, topics: ../secret.txt}\n"),
    ("chat template", with_chat_template("../secret.txt")),
    ("benchmark file", BASE.replace("eval: {retention: [arc_easy], limit: 10}",
                                    "eval: {retention: [arc_easy], custom: [{name: c, path: ../secret.txt}]}")),
    ("`extends` names", "extends: ../secret.txt\n" + BASE),
    ("`extends` names", "extends: '{secret}'\n" + BASE),
    ("`extends` names", "extends: [sub/../../secret.txt]\n" + BASE),
    ("lm-eval task file", BASE.replace("retention: [arc_easy]", "retention: ['lm_eval:../secret.yaml']")),
    ("lm-eval include path", BASE.replace("eval: {retention: [arc_easy], limit: 10}",
                                          "eval: {retention: [arc_easy], limit: 10, lm_eval: {include_path: [..]}}")),
]


@pytest.mark.parametrize("what,text", OUTSIDE, ids=[f"{w.split()[0].strip('`')}{i}" for i, (w, _) in enumerate(OUTSIDE)])
def test_paths_outside_the_project_are_refused(tmp_path: Path, what: str, text: str) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", text.replace("{secret}", str(tmp_path / "secret.txt")))
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), what, "outside the recipe's project",
                   "--allow-outside-paths")


def test_a_symlink_out_of_the_project_is_outside(tmp_path: Path) -> None:
    proj = project(tmp_path)
    (proj / "prompts").mkdir()
    (proj / "prompts/link.j2").symlink_to(tmp_path / "secret.txt")
    write(proj, "r.yaml", BASE + SA_SFT % "prompts/link.j2")
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "outside the recipe's project")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_user_can_opt_in_and_contents_still_stay_out_of_messages(tmp_path: Path, how: str) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", "extends: ../secret.txt\n" + BASE)
    args, env = (["--allow-outside-paths"], None) if how == "flag" else ([], {"SELFAUG_ALLOW_OUTSIDE_PATHS": "1"})
    result = selfaug("validate", "r.yaml", *args, cwd=proj, env=env)
    assert "outside the recipe's project" not in result.output
    assert_refused(result, "secret.txt")  # read now, and refused for what it is, without its content


def test_file_contents_never_appear_in_messages(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "binary.j2", b"\x89PNG\r\n\x1a\n" + SECRET.encode() + b"\xff\xfe")
    write(proj, "syntax.j2", f"api_key = {SECRET}\n{{% if %}}\n")
    write(proj, "scalar.yaml", f"{SECRET}\n")
    for text, words in ((BASE + SA_SFT % "binary.j2", "not UTF-8"), (BASE + SA_SFT % "syntax.j2", "line 2"),
                        ("extends: scalar.yaml\n" + BASE, "a single str value")):
        write(proj, "r.yaml", text)
        assert_refused(selfaug("validate", "r.yaml", cwd=proj), words)
