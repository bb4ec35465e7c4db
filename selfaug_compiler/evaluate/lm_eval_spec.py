"""``lm_eval:`` benchmarks without importing lm_eval: find the task, check its data is here, hash it.

`validate` and the planner call this (torch-free, and lm_eval's import plus its 14,000-file task
index cost seconds). ``lm_eval:NAME`` is looked up, in order, in the recipe's include paths, the
task YAMLs shipped with selfaug (``evaluate/lm_eval_tasks/``) and the installed lm_eval's
``tasks/`` folder, by ``task:``/``group:``/``tag:`` lines; ``lm_eval:path/to/task.yaml`` is a
file relative to the recipe. The scope handed to lm_eval's ``TaskManager`` at run time is the
folder holding the task (plus the include paths), so lm_eval indexes a few files, not all.

Offline check (``check_data``): a task's dataset must be local (``custom_dataset`` code,
``dataset_path: json|csv|parquet|arrow|text`` with existing ``data_files``, a local folder) or
in the Hugging Face cache (datasets or hub cache), else the hub must be reachable; otherwise a
``LmEvalProblem`` names the task and how to make it available.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from selfaug_compiler.evaluate.catalog import LM_EVAL_PREFIX, distribution_version, package_dir

SHIPPED = Path(__file__).parent / "lm_eval_tasks"
LOCAL_BUILDERS = {"json", "csv", "parquet", "arrow", "text"}
MAX_TASK_FILES = 400  # data checks of a group: at most this many of its scope's YAML files


class LmEvalProblem(Exception):
    def __init__(self, message: str, *, expected: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.expected, self.hint = message, expected, hint


@dataclass
class LocatedTask:
    name: str  # as written: lm_eval:...
    target: str  # what follows the prefix: a task/group/tag name or a YAML path
    yaml_path: Path | None  # the YAML file (None: a name found only as a tag)
    scope: list[Path]  # folders lm_eval's TaskManager indexes at run time
    builtin: bool  # found in the installed lm_eval's own tasks
    files: list[Path] = field(default_factory=list)  # local files whose bytes enter the fingerprint

    @property
    def task_spec(self) -> str:
        """What to hand TaskManager.load: the file for a YAML benchmark, else the name."""
        return str(self.yaml_path) if self.target.endswith((".yaml", ".yml")) else self.target


def lm_eval_tasks_dir() -> Path | None:
    root = package_dir("lm_eval")
    return root / "tasks" if root is not None and (root / "tasks").is_dir() else None


def lm_eval_version() -> str:
    return distribution_version("lm_eval")


# ----------------------------------------------------------------------------- YAML reading
class _Loader:
    """A SafeLoader that reads lm_eval's ``!function module.fn`` tags as plain strings."""

    _cls: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls._cls is None:
            import yaml

            class Loader(yaml.SafeLoader):
                pass

            Loader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix} {loader.construct_scalar(node)}"
                                         if isinstance(node, yaml.ScalarNode) else None)
            cls._cls = Loader
        return cls._cls


def read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """The task config with its ``include:`` chain merged (included first, the file's keys win)."""
    import yaml

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader.get()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LmEvalProblem(f"cannot read lm-eval task file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise LmEvalProblem(f"lm-eval task file {path} is not a mapping", expected="task: NAME, dataset_path: ...")
    includes = data.pop("include", None)
    if includes and depth < 8:
        merged: dict[str, Any] = {}
        for inc in includes if isinstance(includes, list) else [includes]:
            inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
            merged.update(read_yaml(inc_path, depth + 1))
        data = {**merged, **data}
    return data


def _include_files(path: Path, depth: int = 0) -> list[Path]:
    """The YAML and the files it includes or takes functions from (``!function utils.fn``)."""
    files = [path]
    text = path.read_text(encoding="utf-8")
    for module in sorted(set(re.findall(r"!function\s+([\w.]+)\.\w+", text))):
        py = path.parent / (module.replace(".", "/") + ".py")
        if py.is_file():
            files.append(py)
    for inc in re.findall(r"^include:\s*['\"]?([^'\"\s]+)", text, flags=re.M):
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        if inc_path.is_file() and depth < 8:
            files += _include_files(inc_path, depth + 1)
    return files


# ----------------------------------------------------------------------------- finding tasks
def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.y*ml") if "__pycache__" not in p.parts)


def _declares(text: str, name: str) -> bool:
    pattern = rf"^(task|group):\s*['\"]?{re.escape(name)}['\"]?\s*$"
    return re.search(pattern, text, flags=re.M) is not None


def _tagged(text: str, name: str) -> bool:
    if name not in text:
        return False
    block = re.search(r"^tag:(.*(?:\n[ \t]+-.*)*)", text, flags=re.M)
    return block is not None and re.search(rf"(^|[\s\[,-]){re.escape(name)}($|[\s\],])", block.group(1), re.M) is not None


def _find_in(folder: Path, name: str) -> tuple[Path | None, list[Path]]:
    """(the YAML declaring ``name`` as task or group, YAMLs tagging it) under ``folder``."""
    tagged: list[Path] = []
    for path in _yaml_files(folder):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if name not in text:
            continue
        if _declares(text, name):
            return path, []
        if _tagged(text, name):
            tagged.append(path)
    return None, tagged


def _builtin_scope(path: Path, tasks_dir: Path) -> Path:
    """The top folder of a built-in task (``tasks/mmlu`` for ``tasks/mmlu/default/x.yaml``)."""
    rel = path.relative_to(tasks_dir)
    return tasks_dir / rel.parts[0] if len(rel.parts) > 1 else path.parent


def resolve_include_path(include_path: list[str], base_dir: Path) -> list[Path]:
    return [(Path(p) if Path(p).is_absolute() else base_dir / p).resolve() for p in include_path]


def locate(name: str, *, base_dir: Path, include_path: list[str] | None = None,
           check_data: bool = False) -> LocatedTask:
    """Where an ``lm_eval:`` benchmark's task lives; with ``check_data``, its data is checked too."""
    target = name[len(LM_EVAL_PREFIX):] if name.startswith(LM_EVAL_PREFIX) else name
    if not target:
        raise LmEvalProblem("`lm_eval:` needs a task, group or YAML file after the colon",
                            expected="lm_eval:arc_easy or lm_eval:tasks/my_task.yaml")
    includes = resolve_include_path(include_path or [], base_dir)
    for folder in includes:
        if not folder.is_dir():
            raise LmEvalProblem(f"lm-eval include path {folder} is not a folder",
                                expected="folders of task YAMLs, relative to the recipe")
    if target.endswith((".yaml", ".yml")):
        path = Path(target) if Path(target).is_absolute() else base_dir / target
        if not path.is_file():
            raise LmEvalProblem(f"lm-eval task file `{target}` does not exist", expected=f"a YAML file under {base_dir}",
                                hint="paths are relative to the recipe's folder")
        located = LocatedTask(name, target, path.resolve(), [path.resolve().parent, *includes], False,
                              _include_files(path.resolve()))
    else:
        located = _locate_name(name, target, includes)
    if check_data:
        check_available(located)
    return located


def _locate_name(name: str, target: str, includes: list[Path]) -> LocatedTask:
    tasks_dir = lm_eval_tasks_dir()
    roots = [(p, False) for p in [*includes, SHIPPED]] + ([(tasks_dir, True)] if tasks_dir else [])
    for root, builtin in roots:
        path, tagged = _find_in(root, target)
        if path is None and not tagged:
            continue
        scope_dir = (_builtin_scope(path or tagged[0], root) if builtin else root)
        files = [] if builtin else [f for p in ([path] if path else tagged) for f in _include_files(p)]
        return LocatedTask(name, target, path, [scope_dir, *includes], builtin, files)
    if tasks_dir is None:
        raise LmEvalProblem(f"lm-eval task `{target}` needs lm-evaluation-harness, which is not installed",
                            hint="pip install lm-eval (or make setup)")
    raise LmEvalProblem(f"no lm-eval task, group or tag named `{target}`",
                        expected=f"a name from `lm_eval ls tasks` (lm_eval {lm_eval_version()}), a task in "
                                 "eval.lm_eval.include_path, or a task YAML file",
                        hint="check the spelling, or write lm_eval:path/to/task.yaml")


# ----------------------------------------------------------------------------- offline data
def hf_cache_dirs() -> tuple[Path, Path]:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets"))
    hub_cache = Path(os.environ.get("HF_HUB_CACHE", os.environ.get("HUGGINGFACE_HUB_CACHE", home / "hub")))
    return datasets_cache, hub_cache


def in_hf_cache(dataset_path: str) -> bool:
    datasets_cache, hub_cache = hf_cache_dirs()
    flat = dataset_path.replace("/", "___")
    return ((datasets_cache / flat).is_dir() or (datasets_cache / dataset_path.replace("/", "--")).is_dir()
            or (hub_cache / ("datasets--" + dataset_path.replace("/", "--"))).is_dir())


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "SELFAUG_OFFLINE"))


@lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    if _offline():
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _data_files(config: dict[str, Any]) -> list[str]:
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    if isinstance(files, dict):
        return [f for v in files.values() for f in ([v] if isinstance(v, str) else list(v))]
    return [str(f) for f in files]


def dataset_problem(task: str, config: dict[str, Any]) -> LmEvalProblem | None:
    """Why a task's data cannot be read here, or None."""
    if config.get("custom_dataset") or config.get("class"):
        return None  # the task's own code provides the data
    path = config.get("dataset_path")
    if not path:
        return None  # a group: its tasks are checked one by one
    if path in LOCAL_BUILDERS:
        missing = [f for f in _data_files(config) if not any(ch in f for ch in "*?[") and not Path(f).exists()]
        if missing:
            return LmEvalProblem(f"lm-eval task `{task}` reads `{missing[0]}`, which does not exist",
                                 expected="data_files that exist (lm_eval reads them relative to the current "
                                          "folder: prefer absolute paths)",
                                 hint="fix dataset_kwargs.data_files in the task YAML")
        return None
    if Path(path).exists() or in_hf_cache(str(path)) or hub_reachable():
        return None
    datasets_cache, hub_cache = hf_cache_dirs()
    name = config.get("dataset_name")
    load = f"datasets.load_dataset('{path}'" + (f", '{name}'" if name else "") + ")"
    return LmEvalProblem(
        f"lm-eval task `{task}` needs dataset `{path}`, which is neither in the Hugging Face cache "
        f"({datasets_cache}, {hub_cache}) nor reachable (offline)",
        expected="a dataset in the local HF cache, or a task YAML over local files",
        hint=f"run `{load}` where the hub is reachable and copy the cache folder here (or set HF_HOME), "
             "or write a task YAML with dataset_path: json and dataset_kwargs.data_files (or custom_dataset), "
             "see docs/recipes.md")


def check_available(located: LocatedTask) -> None:
    """Raises ``LmEvalProblem`` for the first task (of a group: of its scope) whose data is missing."""
    if located.yaml_path is not None and located.target.endswith((".yaml", ".yml")):
        paths = [located.yaml_path]
    elif located.yaml_path is not None and not _is_group(located.yaml_path):
        paths = [located.yaml_path]
    else:  # a group or tag: the tasks of its folder
        paths = _yaml_files(located.scope[0])[:MAX_TASK_FILES]
    seen: set[str] = set()
    for path in paths:
        config = read_yaml(path)
        key = f"{config.get('dataset_path')}|{config.get('dataset_name')}|{config.get('custom_dataset')}"
        if key in seen:
            continue
        seen.add(key)
        task = str(config.get("task") or config.get("group") or located.target)
        problem = dataset_problem(task if task == located.target else f"{task}` (of `{located.target}", config)
        if problem is not None:
            if (SHIPPED / f"selfaug_{located.target}.yaml").is_file():
                problem.hint = (f"`lm_eval:selfaug_{located.target}` runs this task's format on selfaug's packaged "
                                f"copy of the data; or {problem.hint}")
            raise problem


def _is_group(path: Path) -> bool:
    return re.search(r"^group:", path.read_text(encoding="utf-8"), flags=re.M) is not None


# ----------------------------------------------------------------------------- fingerprints
def files_fingerprint(located: LocatedTask) -> str:
    """sha256 over the local files of the task (YAMLs, their python helpers, local data files)."""
    digest = hashlib.sha256()
    paths = list(located.files)
    for path in located.files:
        if path.suffix in (".yaml", ".yml"):
            try:
                paths += [Path(f) for f in _data_files(read_yaml(path)) if Path(f).is_file()]
            except LmEvalProblem:
                pass
    for path in paths:
        digest.update(str(path.name).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
    return digest.hexdigest()[:24]


def static_fingerprint(located: LocatedTask) -> dict[str, Any]:
    """What enters an ``lm_eval:`` evaluate step's id besides its settings."""
    return {"task": located.target, "lm_eval_version": lm_eval_version(), "builtin": located.builtin,
            "files": files_fingerprint(located)}
