"""Generation judges on packaged items: final-number match (GSM8K) and pass@1 by execution."""

from __future__ import annotations

from selfaug_compiler.evaluate.generation import candidate_code, judge
from selfaug_compiler.evaluate.registry import load_benchmark


def test_gsm8k_final_number_match():
    item = load_benchmark("gsm8k", limit=1).items[0]
    right = f"First we compute things. So the answer is {item.answer}."
    wrong = f"The answer is {int(float(item.answer)) + 1}."
    assert judge("number", right, item)["acc"] == 1.0
    assert judge("number", wrong, item) == {"acc": 0.0, "pred": str(int(float(item.answer)) + 1)}


def test_humaneval_pass_at_1_executes_tests():
    item = load_benchmark("humaneval", limit=1).items[0]
    body_only = item.answer  # the canonical body: the signature comes from the prompt
    assert f"def {item.extra['entry_point']}" in candidate_code(body_only, item)
    assert judge("code", f"```python\n{item.extra['code_prefix']}{body_only}```", item)["acc"] == 1.0
    broken = f"```python\ndef {item.extra['entry_point']}(*args):\n    return None\n```"
    result = judge("code", broken, item)
    assert result["acc"] == 0.0 and result["pred"] != "passed"


def test_mbpp_pass_at_1():
    item = load_benchmark("mbpp", limit=1).items[0]
    assert judge("code", f"Here you go:\n```python\n{item.answer}\n```", item)["acc"] == 1.0
    assert judge("code", "```python\nprint('no function here')\n```", item)["acc"] == 0.0
