"""A study file: several recipes ("arms") run with several seeds into one store, then compared.

    name: forgetting-lab
    store: ../.selfaug/lab.duckdb      # relative to the study file
    reference: sft                     # the arm every other arm is tested against
    seeds: [0, 1]                      # recipe seeds (training order, LoRA init, mixing)
    arms:
      - {label: sft, recipe: ../recipes/lab/sft.yaml}
      - {label: continual, recipe: ../recipes/lab/continual.yaml, seeds: [0]}
    results: ../docs/results.md        # the generated section of this file is replaced

Arms share every cached step through the store: the base model is evaluated once, and
generated data (seeded by the method's own ``augment.seed``) is reused across recipe seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfaug_compiler.errors import SelfaugError


class ArmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(..., pattern=r"^[A-Za-z0-9_.+-]+$")
    recipe: str
    seeds: list[int] | None = None
    note: str | None = None


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    store: str = ".selfaug/lab.duckdb"
    reference: str
    seeds: list[int] = Field([0, 1], min_length=1)
    arms: list[ArmSpec] = Field(..., min_length=1)
    results: str | None = None

    @model_validator(mode="after")
    def _labels(self) -> "StudySpec":
        labels = [a.label for a in self.arms]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"arm labels must be unique; repeated: {', '.join(dupes)}")
        if self.reference not in labels:
            raise ValueError(f"reference `{self.reference}` is not an arm label (arms: {', '.join(labels)})")
        return self


@dataclass(frozen=True)
class RunKey:
    """One (arm, seed) run of a study."""

    label: str
    seed: int

    def __str__(self) -> str:
        return f"{self.label}/seed{self.seed}"


@dataclass
class Study:
    spec: StudySpec
    path: Path

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return (self.folder / relative).resolve()

    def recipe_of(self, label: str) -> Path:
        return self.resolve(next(a.recipe for a in self.spec.arms if a.label == label))

    def runs(self) -> list[RunKey]:
        """Every (arm, seed), seeds outermost: all arms of seed 0 finish before any seed 1."""
        seeds = sorted({s for a in self.spec.arms for s in (a.seeds or self.spec.seeds)})
        return [RunKey(a.label, s) for s in seeds for a in self.spec.arms if s in (a.seeds or self.spec.seeds)]


def load_study(path: Path) -> Study:
    import yaml

    from selfaug_compiler.recipe.located import check_yaml_limits

    if not path.is_file():
        raise SelfaugError(f"no study file at {path}", file=str(path), hint="pass a study .yaml, e.g. studies/lab.yaml")
    try:
        text = path.read_text(encoding="utf-8")
        check_yaml_limits(text, str(path))  # nesting and alias bombs: refused before composing
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SelfaugError(f"{path} is not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                           line=mark.line + 1 if mark else None) from None
    try:
        spec = StudySpec.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise SelfaugError(err["msg"], file=str(path), field=field,
                           expected="name, reference, arms: [{label, recipe, seeds?}], seeds, store, results",
                           found=repr(err.get("input"))[:80]) from None
    study = Study(spec, path.resolve())
    for arm in spec.arms:
        if not study.resolve(arm.recipe).is_file():
            raise SelfaugError(f"arm `{arm.label}`: no recipe at {study.resolve(arm.recipe)}", file=str(path),
                               field=f"arms.{arm.label}.recipe", hint="paths are relative to the study file")
    return study
