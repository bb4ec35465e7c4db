"""The learning-vs-forgetting frontier (issue 15.4): Pareto set, points per seed and alpha, JSON and pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.report.frontier import frontier, frontier_lines, pareto


def test_pareto_keeps_exactly_the_non_dominated_points() -> None:
    pts = [(10.0, -5.0), (5.0, -1.0), (4.0, -2.0), (12.0, -9.0), (10.0, -6.0), (0.0, 0.0), (5.0, -1.0)]
    # (4,-2) is dominated by (5,-1); (10,-6) by (10,-5); ties (5,-1) twice dominate neither other
    assert pareto(pts) == [True, True, False, True, False, True, True]
    assert pareto([]) == [] and pareto([(1.0, 1.0)]) == [True]


def _report(title: str, seed: int, gain: float, retention: float, alphas: dict[float, tuple[float, float]] | None = None,
            flip_pts: float | None = None) -> dict:
    rep = {"title": title, "meta": {"context": {"seed": seed}},
           "summary": {"in_domain_gain": gain, "retention_mean_delta": retention},
           "benchmarks": [{"benchmark": "arc_easy", "category": "retention", "before": 60.0, "after": 60.0 + retention,
                           "delta": retention, "fingerprint": "f", "items": {}, "significant": False,
                           **({"noise": {"n": 100, "flips": 3, "flip_pts": flip_pts, "delta": 0.0}} if flip_pts else {})}]}
    if alphas:
        rep["interpolation"] = {"alphas": [{"alpha": a, "in_domain_gain": g, "retention_mean_delta": r}
                                           for a, (g, r) in alphas.items()] + [{"alpha": 1.0, "in_domain_gain": gain,
                                                                                "retention_mean_delta": retention}]}
    return rep


def test_frontier_points_per_seed_means_and_band() -> None:
    runs = [("sft", _report("sft", 1, 20.0, -10.0, {0.5: (12.0, -2.0)}, flip_pts=2.0)),
            ("sft", _report("sft", 2, 22.0, -12.0, {0.5: (14.0, -4.0)}, flip_pts=4.0)),
            ("s3ft", _report("s3ft", 1, 10.0, -1.0))]
    data = frontier(runs)
    assert len(data["points"]) == 5
    assert {(p["arm"], p["alpha"], p["seed"]) for p in data["points"]} == {
        ("sft", 1.0, 1), ("sft", 1.0, 2), ("sft", 0.5, 1), ("sft", 0.5, 2), ("s3ft", 1.0, 1)}
    means = {(m["arm"], m["alpha"]): m for m in data["means"]}
    assert means[("sft", 1.0)]["x"] == pytest.approx(21.0) and means[("sft", 1.0)]["y"] == pytest.approx(-11.0)
    assert means[("sft", 0.5)]["n"] == 2 and means[("sft", 0.5)]["y"] == pytest.approx(-3.0)
    # s3ft (10, -1) dominates sft a=0.5 (13, -3)? no: sft a=0.5 has the larger gain. All three on the front.
    assert [means[k]["pareto"] for k in [("sft", 1.0), ("sft", 0.5), ("s3ft", 1.0)]] == [True, True, True]
    assert data["noise_band"] == pytest.approx(3.0)
    text = "\n".join(frontier_lines(data))
    assert "* sft a=0.5: +13.0 / -3.0 (n=2)" in text and "noise floor ±3.0" in text
    assert frontier_lines(frontier([("x", {"summary": {}, "benchmarks": []})])) == []


def test_compare_json_lists_frontier_points_and_html_draws_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selfaug_compiler.cli import main

    paths = []
    for name, rep in [("a", _report("sft", 1, 20.0, -10.0, {0.5: (12.0, -2.0)})), ("b", _report("kl", 1, 8.0, -6.0))]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(rep))
        paths.append(str(folder))
    assert main(["compare", *paths, "--format", "json", "--html", str(tmp_path / "compare.html")]) == 0
    out = json.loads(capsys.readouterr().out)
    means = {(m["arm"], m["alpha"]): m["pareto"] for m in out["frontier"]["means"]}
    assert means == {("sft", 1.0): True, ("sft", 0.5): True, ("kl", 1.0): False}  # kl (8,-6) is dominated by a=0.5
    assert len(out["frontier"]["points"]) == 3
    page = (tmp_path / "compare.html").read_text()
    assert "Learning vs forgetting" in page and "data:image/png;base64," in page


def test_spearman_matches_a_hand_computation_with_ties() -> None:
    from selfaug_compiler.study.results import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    from scipy.stats import spearmanr

    xs, ys = [0.1, 0.5, 0.5, 0.9, 0.2, 0.7], [3.0, 1.0, 5.0, 8.0, 1.0, 2.0]  # ties on both sides
    assert spearman(xs, ys) == pytest.approx(spearmanr(xs, ys).statistic, rel=1e-12)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_study_frontier_section_has_png_table_and_kl_correlation(tmp_path: Path) -> None:
    from selfaug_compiler.study.frontier_md import frontier_section

    runs = []
    for arm, seed, gain, ret, kl in [("sft", 1, 20.0, -10.0, 0.30), ("sft", 2, 22.0, -12.0, 0.35),
                                     ("s3ft", 1, 10.0, -1.0, 0.05), ("s3ft", 2, 9.0, -2.0, 0.08),
                                     ("kl", 1, 8.0, -6.0, 0.2)]:
        rep = _report(arm, seed, gain, ret, {0.5: (gain / 2, ret / 4)} if arm == "sft" else None)
        rep["summary"]["kl_to_base"] = kl
        runs.append((arm, rep))
    text = frontier_section(runs, tmp_path / "figs", tmp_path)
    assert (tmp_path / "figs" / "frontier.png").stat().st_size > 1000
    assert "![learning vs forgetting](figs/frontier.png)" in text
    assert "| **sft** | 2 | +21.0 | -11.0 | 0.3250 | ★ |" in text
    assert "| **s3ft** | 2 | +9.5 | -1.5 | 0.0650 | ★ |" in text
    assert "| **sft a=0.5** | 2 | +10.5 | -2.8 | – | ★ |" in text
    assert "| kl | 1 | +8.0 | -6.0 | 0.2000 |  |" in text  # dominated by sft a=0.5 and s3ft
    assert "across 5 runs (arms × seeds): Spearman ρ = +1.00" in text  # KL order = drop order


def test_frontier_lab_study_compiles_every_arm_with_its_diagnostics() -> None:
    from selfaug_compiler.compile.planner import build_plan
    from selfaug_compiler.recipe.loader import load_recipe
    from selfaug_compiler.study.spec import load_study

    study = load_study(Path(__file__).parents[1] / "studies" / "lab_frontier.yaml")
    assert [a.label for a in study.spec.arms] == ["sft", "dft", "kl", "s3ft"] and study.spec.seeds == [0, 1]
    for arm in study.spec.arms:
        plan = build_plan(load_recipe(study.recipe_of(arm.label)))
        names = {s.name for s in plan.steps}
        assert "diagnose.kl_to_base" in names and "eval.after.qa_closed" in names and "eval.after.qa_open_book" in names
        assert ({"interpolate.a0.25", "interpolate.a0.5", "interpolate.a0.75"} <= names) == (arm.label == "sft")
