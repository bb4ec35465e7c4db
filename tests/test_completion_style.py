"""Completion-style base models (``model.prompt_format: completion``, models/completion.py) and the
chat template in generated rows' provenance and in the generate/train ids (issue 11.3).

The text a completion-style model gets, the exact token ids and loss mask it trains on, that a
chat-style model without a template is an error (never raw text), and, on a tiny model, that two
recipes differing only in their chat template get different generate/train ids and rows that name
each template (a completion-style recipe's rows name ``none``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from selfaug_compiler.errors import SelfaugError
from tests.tiny_models import build_tiny_model, build_tokenizer


@pytest.fixture(scope="module")
def base_tok():
    """The tiny tokenizer without a chat template, declared completion-style."""
    from selfaug_compiler.models.completion import mark

    tok = build_tokenizer()
    tok.chat_template = None
    return mark(tok, "completion")


def test_the_engine_gets_the_completion_text(base_tok):
    from selfaug_compiler.generate.engine import encode_prompt, prompt_text

    assert prompt_text(base_tok, "2+2?") == ("2+2?\n", False)
    assert prompt_text(base_tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]) \
        == ("Be brief.\n\n2+2?\n", False)
    assert encode_prompt(base_tok, "2+2?") == base_tok("2+2?\n")["input_ids"]
    assert prompt_text(base_tok, "Question: 2+2?\nAnswer:", chat=False) == ("Question: 2+2?\nAnswer:", False)
    with pytest.raises(SelfaugError, match="completion-style"):
        prompt_text(base_tok, "2+2?", chat=True)
    with pytest.raises(SelfaugError, match="completion-style"):
        prompt_text(base_tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                               {"role": "user", "content": "c"}])


def test_a_chat_model_without_a_template_is_an_error_not_raw_text():
    from selfaug_compiler.generate.engine import prompt_text
    from selfaug_compiler.train.formatting import format_rows

    tok = build_tokenizer()
    tok.chat_template = None  # chat style (the default) and no template: the original bug's case
    with pytest.raises(SelfaugError, match="prompt_format: completion"):
        prompt_text(tok, "2+2?")
    with pytest.raises(SelfaugError, match="no chat template"):
        format_rows(tok, [{"prompt": "2+2?", "response": "4"}], 64)


def test_completion_training_ids_and_loss_mask(base_tok):
    from selfaug_compiler.train.formatting import IGNORE, format_rows

    eos = base_tok.eos_token_id
    examples, stats = format_rows(base_tok, [{"prompt": "2+2?", "response": "4"},
                                             {"messages": json.dumps([{"role": "system", "content": "Be brief."},
                                                                      {"role": "user", "content": "1+1?"},
                                                                      {"role": "assistant", "content": "2"}])}], 64)
    assert stats.examples == 2
    for example, prompt, reply in zip(examples, ["2+2?\n", "Be brief.\n\n1+1?\n"], ["4", "2"]):
        p = base_tok(prompt)["input_ids"]
        r = base_tok(reply, add_special_tokens=False)["input_ids"] + [eos]
        assert example.input_ids == p + r
        assert example.labels == [IGNORE] * len(p) + r
    with pytest.raises(SelfaugError, match="one prompt and one response"):
        format_rows(base_tok, [{"messages": json.dumps([{"role": "user", "content": "a"},
                                                        {"role": "assistant", "content": "b"},
                                                        {"role": "user", "content": "c"},
                                                        {"role": "assistant", "content": "d"}])}], 64)


# ----------------------------------------------------------------------------- on a tiny model
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("m") / "tiny"
    build_tiny_model(folder)
    return folder


def _bare(tiny: Path, folder: Path) -> Path:
    """A copy of the tiny model whose tokenizer has no chat template (a base model)."""
    import shutil

    shutil.copytree(tiny, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


def _project(tmp_path: Path, tiny: Path, model_extra: str) -> Path:
    _bare(tiny, tmp_path / "tiny")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"prompt": f"{i}+{i}?", "response": str(2 * i)}) + "\n"
                                              for i in range(5)))
    (tmp_path / "r.yaml").write_text(
        f"name: c\nmodel: {{ref: ./tiny, dtype: float32{model_extra}}}\n"
        "task: {name: t, source: {kind: file, path: t.jsonl}, fields: {prompt: prompt, response: response}, "
        "split: {heldout: 1}}\n"
        "train: {max_length: 64, epochs: 1, batch_size: 2}\n"
        "augment: {method: sdft, sampling: {max_new_tokens: 8}, accept_truncated: true}\n"
        "eval: {retention: [], in_domain: [heldout], limit: 1, max_new_tokens: 8}\n")
    return tmp_path / "r.yaml"


def _run(recipe: Path, capsys, until: str | None = None) -> dict[str, str]:
    """validate, run (whole, or ``--until`` a step), and return {step name: step id} plus the
    chat templates the generated and judged rows name."""
    from selfaug_compiler.cli import main
    from selfaug_compiler.compile.planner import plan_checked_recipe
    from selfaug_compiler.store import open_store

    assert main(["validate", str(recipe)]) == 0, capsys.readouterr()
    extra = ["--until", until] if until else []
    assert main(["run", str(recipe), "--store", str(recipe.parent / "s.duckdb"), *extra]) == 0, capsys.readouterr()
    plan, _ = plan_checked_recipe(recipe, [])
    ids = {s.name: s.id for s in plan.steps}
    with open_store(recipe.parent / "s.duckdb", read_only=True) as store:
        for name in ("generate.rewrite", "judge.rewrite"):
            version = store.version_for_step(ids[name])
            metas = [json.loads(m) for m in store.read(version.ref)["meta"].to_pylist()]
            ids[name + ":templates"] = {m.get("chat_template") for m in metas}
    return ids


def test_the_chat_template_is_in_rows_and_ids(tmp_path, tiny, capsys):
    """Two recipes differing only in the chat template (the shipped chatml, a copy with one comment
    more): different generate, judge and train ids; each one's rows name the sha256 of its template.
    A completion-style recipe on the same bare model runs whole (ingest, generate, judge, train,
    held-out evaluation: generation and gold loss) and its rows name ``none``."""
    from selfaug_compiler.models.chat_templates import chat_template_file

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "n").mkdir()
    shipped = chat_template_file("chatml", None).read_bytes()
    a = _run(_project(tmp_path / "a", tiny, ", chat_template: chatml"), capsys, until="judge.rewrite")
    recipe_b = _project(tmp_path / "b", tiny, ", chat_template: mine.jinja")
    (tmp_path / "b" / "mine.jinja").write_bytes(shipped + b"{# mine #}")
    b = _run(recipe_b, capsys, until="judge.rewrite")
    for name in ("generate.rewrite", "judge.rewrite", "train"):
        assert a[name] != b[name], name
    assert a["generate.rewrite:templates"] == {"sha256:" + hashlib.sha256(shipped).hexdigest()}
    assert b["generate.rewrite:templates"] == {"sha256:" + hashlib.sha256(shipped + b"{# mine #}").hexdigest()}
    assert b["judge.rewrite:templates"] == b["generate.rewrite:templates"]  # judged rows keep it
    n = _run(_project(tmp_path / "n", tiny, ", prompt_format: completion"), capsys)
    assert n["generate.rewrite:templates"] == {"none"} and n["judge.rewrite:templates"] == {"none"}
    assert n["generate.rewrite"] not in (a["generate.rewrite"], b["generate.rewrite"])
    # data export reads the recorded train step's prompt format: TRL's plain prompt/completion
    from selfaug_compiler.cli import main
    from selfaug_compiler.store import open_store

    with open_store(tmp_path / "n" / "s.duckdb", read_only=True) as store:
        mix = store.version_for_step(n["mix"]).ref
    out = tmp_path / "n" / "trl.jsonl"
    assert main(["data", "export", mix, "--format", "trl", "-o", str(out), "--store", str(tmp_path / "n" / "s.duckdb")]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(isinstance(r["prompt"], str) and r["prompt"].endswith("?\n") for r in records), records


def test_selfaug_eval_on_a_base_model(tmp_path, tiny, capsys):
    """``selfaug eval`` on a model without a chat template: refused as chat (exit 2, naming
    --prompt-format), scored with ``--prompt-format completion``; cached apart from chat results."""
    from selfaug_compiler.cli import main

    bare = str(_bare(tiny, tmp_path / "base"))
    args = ["eval", bare, "-b", "gsm8k", "--limit", "1", "--max-new-tokens", "4", "--device", "cpu",
            "--store", str(tmp_path / "s.duckdb"), "--format", "json"]
    assert main(args) == 2
    assert "prompt_format: completion" in capsys.readouterr().err
    assert main([*args, "--prompt-format", "completion"]) == 0, capsys.readouterr()
    result = json.loads(capsys.readouterr().out)["gsm8k"]
    assert result["n"] == 1 and result["cached"] is False and ":completion:" in result["model_key"]
    assert main([*args, "--prompt-format", "completion", "--apply-chat-template"]) == 2


def test_a_served_completion_style_model(tmp_path):
    """A completion-style model behind an OpenAI-compatible server (mode: completions, the stub
    server of tests/test_backends_openai_stub.py): every request is ``/completions`` with the
    completion text (the prompt template's render + a newline), and the rows name ``none``."""
    pytest.importorskip("torch")
    from selfaug_compiler.recipe.schema import ModelSpec, S3ftParams
    from tests.test_augment_steps import SHORT, recipe_for, rows_of, run_until_mix
    from tests.test_backends_openai_stub import StubServer

    (tmp_path / "toy.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": f"{i} + 1?",
                                                            "answer": f"#### {i + 1}"}) + "\n" for i in range(3)))
    stub = StubServer()
    try:
        recipe = recipe_for(tmp_path, S3ftParams(answer=SHORT, paraphrase=SHORT), "served_base")
        recipe = recipe.model_copy(update={"model": ModelSpec(ref="base-model", prompt_format="completion", backend={
            "kind": "openai", "mode": "completions", "base_url": stub.url, "max_retries": 0})})
        _, summary = run_until_mix(tmp_path, recipe, tmp_path / "s.duckdb")
        answers = rows_of(tmp_path / "s.duckdb", summary, "generate.self_answer")
        assert len(answers) == 3 and len(stub.bodies) >= 3
        first = stub.bodies[:3]  # the self-answers (the paraphrases follow)
        assert all("messages" not in b and b["prompt"].endswith("\n") and "<|im_start|>" not in b["prompt"]
                   for b in first), first
        assert sorted(q for q in ("0 + 1?", "1 + 1?", "2 + 1?") for b in first if q in b["prompt"]) \
            == ["0 + 1?", "1 + 1?", "2 + 1?"]
        assert {json.loads(r["meta"])["chat_template"] for r in answers} == {"none"}
    finally:
        stub.server.shutdown()


def test_a_model_judge_names_its_chat_template(tmp_path):
    """S3FT with a model judge on the tiny model (ChatML): the self-answers name the template they
    were generated with, and the judged rows also name the judge's (``meta.judge_chat_template``)."""
    pytest.importorskip("torch")
    from selfaug_compiler.recipe.schema import JudgeSpec, S3ftParams
    from tests.test_augment_steps import SHORT, recipe_for, rows_of, run_until_mix
    from tests.tiny_models import CHATML

    build_tiny_model(tmp_path / "tiny")
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": f"{i} + 1?",
                                                            "answer": f"#### {i + 1}"}) + "\n" for i in range(2)))
    recipe = recipe_for(tmp_path, S3ftParams(answer=SHORT, paraphrase=SHORT, judge=JudgeSpec(kind="model"),
                                                accept_truncated=True), "mj")
    _, summary = run_until_mix(tmp_path, recipe, tmp_path / "s.duckdb")
    chatml = "sha256:" + hashlib.sha256(CHATML.encode()).hexdigest()
    judged = rows_of(tmp_path / "s.duckdb", summary, "judge.self_answer")
    assert len(judged) == 2
    assert all(json.loads(r["meta"])["chat_template"] == chatml for r in judged)
    assert all(json.loads(r["meta"])["judge_chat_template"] == chatml for r in judged)


def test_stop_strings_end_a_base_models_rewrites(tmp_path, tiny, capsys):
    """``augment.sampling.stop`` on a completion-style model: validate warns without it; with a
    string taken from a rewrite of the run without it, that rewrite ends just before it (finish
    reason ``stop``, so it is no cut-off target), its row records the stop strings, and the
    generate step's id changes (an explicit ``stop: null`` keeps the id of a recipe without it)."""
    from selfaug_compiler.cli import main
    from selfaug_compiler.compile.planner import plan_checked_recipe
    from selfaug_compiler.store import open_store

    def rewrites(recipe: Path) -> tuple[str, list[dict]]:
        plan, _ = plan_checked_recipe(recipe, [])
        step = next(s.id for s in plan.steps if s.name == "generate.rewrite")
        with open_store(recipe.parent / "s.duckdb", read_only=True) as store:
            return step, store.read(store.version_for_step(step).ref).to_pylist()

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    plain = _project(tmp_path / "a", tiny, ", prompt_format: completion")
    assert main(["validate", str(plain)]) == 0
    assert "warning: augment.sampling.stop" in "".join(capsys.readouterr())  # the warning
    _run(plain, capsys, until="judge.rewrite")
    plain_id, before = rewrites(plain)
    text = max((r["response"] for r in before), key=len)
    stop = text[len(text) // 2:len(text) // 2 + 3]
    assert len(stop) == 3, text

    def with_sampling(folder: str, sampling: str) -> Path:
        recipe = _project(tmp_path / folder, tiny, ", prompt_format: completion")
        recipe.write_text(recipe.read_text().replace("sampling: {max_new_tokens: 8}", f"sampling: {sampling}"))
        return recipe

    null = with_sampling("c", "{max_new_tokens: 8, stop: null}")
    assert plan_checked_recipe(null, [])[0].step("generate.rewrite").id == plain_id
    stopped = with_sampling("b", "{max_new_tokens: 8, stop: [" + json.dumps(stop) + "]}")
    _run(stopped, capsys, until="judge.rewrite")
    stopped_id, after = rewrites(stopped)
    assert stopped_id != plain_id
    old = {r["key"]: r for r in before}
    hit = [r for r in after if stop in old[r["key"]]["response"]]
    assert hit
    for r in after:
        assert json.loads(r["sampling"])["stop"] == [stop] and stop not in r["response"]
    for r in hit:
        full = old[r["key"]]["response"]
        assert r["response"] == full[:full.index(stop)].strip() and json.loads(r["meta"])["finish_reason"] == "stop"


def test_eval_stop_ends_a_base_models_benchmark_replies(tmp_path, tiny, capsys):
    """``eval.stop`` on a completion-style model: validate warns without it; with a string taken
    from the held-out reply of the run without it, the reply ends just before it (finish reason
    ``stop``) and is scored on that; the generation eval's id changes, a multiple-choice eval's
    does not, and the results are cached apart (a new evaluation, not the old one)."""
    from selfaug_compiler.cli import main
    from selfaug_compiler.compile.planner import plan_checked_recipe
    from selfaug_compiler.store import open_store

    def heldout_rows(recipe: Path) -> list[dict]:
        step = plan_checked_recipe(recipe, [])[0].step("eval.before.heldout")
        assert main(["run", str(recipe), "--store", str(recipe.parent / "s.duckdb"),
                     "--until", "eval.before.heldout"]) == 0, capsys.readouterr()
        with open_store(recipe.parent / "s.duckdb", read_only=True) as store:
            metrics = store.step_result(step.id)["metrics"]
            return store.get_eval(metrics["model_key"], metrics["fingerprint"])[1].to_pylist()

    def project(folder: str, eval_extra: str) -> Path:
        (tmp_path / folder).mkdir()
        recipe = _project(tmp_path / folder, tiny, ", prompt_format: completion")
        recipe.write_text(recipe.read_text().replace("max_new_tokens: 8}\n", f"max_new_tokens: 8{eval_extra}}}\n")
                          .replace("retention: []", "retention: [arc_easy]"))
        return recipe

    plain = project("a", "")
    assert main(["validate", str(plain)]) == 0
    assert "warning: eval.stop" in "".join(capsys.readouterr())
    plain_plan, _ = plan_checked_recipe(plain, [])
    stop_plan, _ = plan_checked_recipe(project("b", ", stop: ['zz']"), [])
    assert stop_plan.step("eval.before.heldout").id != plain_plan.step("eval.before.heldout").id
    assert stop_plan.step("eval.before.heldout").params["stop"] == ["zz"]
    assert stop_plan.step("eval.before.arc_easy").id == plain_plan.step("eval.before.arc_easy").id
    assert "stop" not in stop_plan.step("eval.before.arc_easy").params
    [full] = heldout_rows(plain)
    text = full["output"]
    stop = text[len(text) // 2:len(text) // 2 + 3]
    assert len(stop) == 3 and full["finish_reason"] == "length", full
    [cut] = heldout_rows(project("c", ", stop: [" + json.dumps(stop) + "]"))
    assert cut["finish_reason"] == "stop" and stop not in cut["output"]
    assert text.startswith(cut["output"].strip()) and len(cut["output"].strip()) < len(text.strip())
