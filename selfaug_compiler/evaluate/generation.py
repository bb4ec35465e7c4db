"""Generation benchmarks: greedy completions judged by final-number match or test execution.

Prompts go the way the model is trained and used (``generate(..., chat=None)``): its chat template,
or the completion text of a completion-style base model (``models/completion.py``); a benchmark
setting ``chat: False`` sends its prompts raw (lm_eval's format). ``gold_loss`` gives the mean
negative log-likelihood (nats/token) of the gold responses under the same template, useful
where accuracy sits at the floor (a small model on GSM8K). Replies come from a generation backend
(``generate/backends``): the loaded model's own engine, or ``eval.backend`` (``eval_backend.py``).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from selfaug_compiler.evaluate.items import GenItem

CODE_TIMEOUT_S = 10.0


def _normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".")


def judge_number(output: str, gold: str) -> tuple[bool, str | None]:
    from selfaug_compiler.judges.numeric import extract_final_number, numbers_match

    return numbers_match(output, gold), extract_final_number(output)


def candidate_code(output: str, item: GenItem) -> str:
    """The program to test: the reply's fenced code (or the whole reply), with the HumanEval
    signature prepended when the reply gives only the function body."""
    from selfaug_compiler.judges.verdicts import extract_code

    code = extract_code(output)
    entry = item.extra.get("entry_point")
    prefix = item.extra.get("code_prefix")
    if prefix and entry and not re.search(rf"def\s+{re.escape(entry)}\s*\(", code):
        code = prefix + code
    elif prefix:  # keep the prompt's imports (typing.List, math, ...) available
        imports = "\n".join(line for line in prefix.splitlines() if line.startswith(("import ", "from ")))
        code = imports + "\n" + code if imports else code
    return code


def judge_code(output: str, item: GenItem, timeout_s: float = CODE_TIMEOUT_S) -> tuple[bool, str]:
    from selfaug_compiler.judges.code_exec import run_tests

    result = run_tests(candidate_code(output, item), [item.tests], timeout_s=timeout_s)
    return bool(result.passed), result.reason


def judge(answer_type: str, output: str, item: GenItem) -> dict[str, Any]:
    if answer_type == "number":
        ok, pred = judge_number(output, item.answer)
        return {"acc": float(ok), "pred": pred}
    if answer_type == "code":
        ok, reason = judge_code(output, item)
        return {"acc": float(ok), "pred": reason}
    if answer_type == "choice":
        from selfaug_compiler.judges.labels import extract_label

        pred = extract_label(output, list(item.extra.get("labels") or [item.answer]))
        return {"acc": float(pred is not None and pred.lower() == item.answer.lower()), "pred": pred}
    if answer_type == "qa":  # evaluate/qa.py: the reply contains the gold or an alias (normalized)
        from selfaug_compiler.evaluate.qa import matched_alias

        pred = matched_alias(output, list(item.extra.get("aliases") or [item.answer]))
        return {"acc": float(pred is not None), "pred": pred}
    ok = _normalize_text(output) == _normalize_text(item.answer)
    return {"acc": float(ok), "pred": None}


def score_generation(loaded: Any, items: list[GenItem], *, answer_type: str, max_new_tokens: int,
                     batch_size: int = 16, progress: Callable[[int, int], None] | None = None,
                     chat: bool | None = None, stop: list[str] | None = None) -> list[dict[str, Any]]:
    """Per-item results: acc (pass@1 / match), the raw output, the extracted prediction.
    ``chat``: prompts through the chat template; ``stop`` (``eval.stop``) ends every reply before
    the first stop string, in the backend; an item's ``extra["until"]`` cuts its output at the
    first of its stop strings before judging (lm_eval's ``until``)."""
    from selfaug_compiler.evaluate.eval_backend import greedy_seeds
    from selfaug_compiler.evaluate.prompting import cut_at
    from selfaug_compiler.generate.backends.steps import backend_of
    from selfaug_compiler.generate.engine import SamplingParams

    backend = backend_of(loaded)  # the loaded model's transformers engine, or the eval backend (eval_backend.py)

    done = [0]

    def on_batch(indices: list[int], _gens: list[Any]) -> None:
        done[0] += len(indices)
        if progress is not None:
            progress(done[0], len(items))

    if progress is not None:
        progress(0, len(items))
    sp = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, stop=stop)  # None: no stop strings
    gens = backend.generate([item.prompt for item in items], sp,
                            seeds=greedy_seeds(backend, len(items)), batch_size=batch_size, chat=chat,
                            on_batch=on_batch, progress=False)
    out = []
    for item, gen in zip(items, gens):
        row = {"id": item.id, "output": gen.text, "new_tokens": gen.new_tokens, "finish_reason": gen.finish_reason,
               "prompt": item.prompt, "gold": item.answer}  # prompt/gold: the report's right-to-wrong examples
        row.update(judge(answer_type, cut_at(gen.text, item.extra.get("until")), item))
        out.append(row)
    return out


def gold_loss(loaded: Any, prompts: list[str], responses: list[str], *, batch_size: int = 8,
              progress: Callable[..., None] | None = None) -> list[float]:
    """Mean NLL (nats/token) of each gold response after its chat-templated prompt.

    ``progress(done, total, "gold loss")`` after each batch."""
    import torch

    from selfaug_compiler.generate.engine import encode_prompt

    from selfaug_compiler.evaluate.eval_backend import in_process

    loaded = in_process(loaded)  # logits: always the model loaded in-process
    tok = loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    end = [tok.eos_token_id] if tok.eos_token_id is not None else []
    pairs = [(encode_prompt(tok, p), tok(r, add_special_tokens=False)["input_ids"] + end)
             for p, r in zip(prompts, responses)]
    losses: list[float] = []
    if progress is not None:
        progress(0, len(pairs), "gold loss")
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            width = max(len(p) + len(r) for p, r in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for i, (p, r) in enumerate(chunk):
                seq = p + r
                ids[i, :len(seq)] = torch.tensor(seq)
                mask[i, :len(seq)] = 1
                labels[i, len(p):len(seq)] = torch.tensor(r)
            logits = loaded.model(input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), -1)
            tgt = labels[:, 1:].to(loaded.device)
            valid = tgt != -100
            picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            nll = -(picked * valid).sum(-1) / valid.sum(-1).clamp(min=1)
            losses.extend(float(x) for x in nll)
            if progress is not None:
                progress(len(losses), len(pairs), "gold loss")
    return losses
