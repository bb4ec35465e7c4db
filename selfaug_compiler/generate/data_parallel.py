"""Data-parallel generation on one node: ``model.backend.data_parallel_size: k`` (a speed field).

A generate step that is sharded by row key (``shard_run.SHARDABLE``: self_answer, paraphrase,
rewrite) on an in-process backend (``transformers``, ``vllm``) with k > 1 starts k worker
processes on this node; worker i runs shard i/k of the step through the shard code path
(``shard_run.run_shard``: per-batch files under ``shards-of-<k>/shard-<i>/``, never the store),
each pinned to its own devices:

- ``vllm``: GPUs ``i*tp .. i*tp+tp-1`` of the visible ones through ``CUDA_VISIBLE_DEVICES``
  (tp = ``tensor_parallel_size``): k independent engines, the prompts split outside the engine
  as in vLLM's offline data-parallel example (no ``VLLM_DP_*`` coordination, which only MoE expert
  parallelism needs);
- ``transformers`` on CUDA: one GPU each; on CPU: each worker gets its share of the threads
  (``threads.worker_env``: affinity / k, or ``execution.torch_threads`` each).

The parent holds no store connection while they run, prints the rows staged across workers,
and returns once every shard is done; the step then commits the shards' rows exactly as the
``--shard`` coordinator does (``generate/shards.collect``): the version of a one-process run.
A shard already done (``shard-<i>.done``) starts no worker: a rerun resumes. A failing worker
is reported at once (its shard and log); the others finish their rows, then the step fails with
one message naming the failed shards and their logs. Workers run in their own process groups,
killed with the parent (on an exception or Ctrl-C by the parent; on ``kill -9`` of the parent by
the kernel's parent-death signal, Linux).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from selfaug_compiler.errors import SelfaugError, StepFailed

IN_PROCESS = ("transformers", "vllm")
LOG_TAIL = 400  # characters of a failed worker's log quoted in the error


def data_parallel_size(speed: Mapping[str, Any]) -> int:
    """k from a generate step's speed settings (the planner puts it there only when k > 1)."""
    return max(1, int(speed.get("data_parallel_size") or 1))


def visible_gpu_ids(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this process may use, torch-free: ``CUDA_VISIBLE_DEVICES`` or the driver's count."""
    from selfaug_compiler.precision import visible_cuda_devices

    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return ids[:visible_cuda_devices()] if Path("/proc/driver/nvidia/gpus").is_dir() else ids
    return [str(i) for i in range(visible_cuda_devices())]


def worker_devices(kind: str, k: int, tp: int, device: str, gpus: list[str]) -> list[list[str]] | None:
    """Per worker, the GPU ids it sees (None: CPU workers). Raises when k workers do not fit."""
    if kind == "vllm" or device.startswith("cuda"):
        per = tp if kind == "vllm" else 1
        if k * per > len(gpus):
            what = f"{k} replicas x tensor_parallel_size {tp}" if kind == "vllm" else f"{k} workers x 1 GPU"
            raise SelfaugError(f"model.backend.data_parallel_size {k} needs {k * per} GPUs ({what}); "
                               f"{len(gpus)} visible", field="model.backend.data_parallel_size",
                               expected=f"data_parallel_size x GPUs per replica <= {len(gpus)}", found=str(k),
                               hint="lower data_parallel_size (or tensor_parallel_size), or expose more GPUs "
                                    "(CUDA_VISIBLE_DEVICES)")
        return [gpus[i * per:(i + 1) * per] for i in range(k)]
    return None


def worker_envs(step_speed: Mapping[str, Any], kind: str, k: int, env: Mapping[str, str] | None = None
                ) -> list[dict[str, str]]:
    """The environment of each of the k workers (devices pinned, threads shared)."""
    from selfaug_compiler.precision import resolve_device_name
    from selfaug_compiler.threads import worker_env

    env = dict(os.environ if env is None else env)
    backend = dict(step_speed.get("backend") or {})
    tp = int(backend.get("tensor_parallel_size") or 1)
    device = resolve_device_name(str(step_speed.get("device", "auto")))
    devices = worker_devices(kind, k, tp, device, visible_gpu_ids(env))
    base = worker_env(env, step_speed.get("torch_threads"), k)
    out = []
    for i in range(k):
        one = dict(base)
        if devices is not None:
            one["CUDA_VISIBLE_DEVICES"] = ",".join(devices[i])
        else:
            one["SELFAUG_TORCH_THREADS"] = one["OMP_NUM_THREADS"]  # the worker's share, whatever the recipe says
        out.append(one)
    return out


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()  # its own process group: the parent kills the worker and whatever it starts (vLLM's engine)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the parent's death (kill -9) ends it
    except (OSError, AttributeError):
        pass


def _kill(procs: list[subprocess.Popen], grace_s: float = 5.0) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def _staged_rows(root: Path, cache: dict[Path, int]) -> int:
    import pyarrow.parquet as pq

    for part in root.glob("shard-*/part-*.parquet"):
        if part not in cache:
            try:
                cache[part] = pq.read_metadata(part).num_rows
            except OSError:
                continue
    return sum(cache.values())


def _tail(log: Path) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text[-LOG_TAIL:].splitlines()[-1] if text else ""


def run_workers(ctx: Any, k: int, *, poll_s: float = 0.5) -> None:
    """Generate the step's rows in k local workers (shard i/k each); returns when all are staged."""
    from selfaug_compiler.generate.shards import Shard, _done_file, shard_root, staged_counts

    kind = str(((ctx.step.params.get("model") or {}).get("spec", {}).get("backend") or {}).get("kind", "transformers"))
    if kind not in IN_PROCESS:
        raise SelfaugError(f"model.backend.data_parallel_size {k} with kind {kind}", field="model.backend.data_parallel_size",
                           expected="1 for an openai endpoint", found=str(k),
                           hint="set data_parallel_size: 1 and raise max_concurrency (the server parallelises)")
    other = [c for c in staged_counts(ctx.work_dir) if c != k]
    if other:
        raise SelfaugError(f"step {ctx.step.name} has shards staged for {other[0]} shards, data_parallel_size is {k}",
                           field="model.backend.data_parallel_size", expected=str(other[0]), found=str(k),
                           hint=f"set data_parallel_size: {other[0]} to resume them, or delete "
                                f"{shard_root(ctx.work_dir, other[0])} to start over with {k}")
    root = shard_root(ctx.work_dir, k)
    root.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(k) if not _done_file(ctx.work_dir, Shard(i, k)).is_file()]
    if not todo:
        return
    plan_file = root / "plan.json"
    ctx.plan.save(plan_file)
    envs = worker_envs(ctx.step.speed, kind, k)
    store_path = Path(ctx.store.path)
    procs: dict[int, subprocess.Popen] = {}
    logs = {i: root / f"worker-{i}.log" for i in todo}
    try:
        for i in todo:
            cmd = [sys.executable, "-m", "selfaug_compiler.generate.data_parallel", str(plan_file), str(store_path),
                   str(ctx.recipe_dir), ctx.step.name, f"{i}/{k}"]
            with open(logs[i], "w", encoding="utf-8") as log:
                procs[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=envs[i],
                                            preexec_fn=_die_with_parent)
        failed: dict[int, int] = {}
        cache: dict[Path, int] = {}
        while True:
            for i, p in procs.items():
                if i not in failed and p.poll() not in (None, 0):
                    failed[i] = p.returncode
                    ctx.progress(_staged_rows(root, cache), None, unit="rows",
                                 note=f"shard {i}/{k} failed (log {logs[i]}); the others finish their rows")
            running = sum(p.poll() is None for p in procs.values())
            ctx.progress(_staged_rows(root, cache), None, unit="rows", note=f"{running} of {len(procs)} workers running")
            if not running:
                break
            time.sleep(poll_s)
    except BaseException:
        _kill(list(procs.values()))
        raise
    if failed:
        lines = "; ".join(f"shard {i}/{k} exit {code}, log {logs[i]}: {_tail(logs[i])}" for i, code in sorted(failed.items()))
        raise StepFailed(ctx.step.name, f"data-parallel worker(s) failed: {lines}",
                         hint="fix the cause shown in the log, then run the same command: finished shards are kept "
                              "and only the failed shards' missing rows are generated")


def main(argv: list[str]) -> int:
    """A worker: ``python -m selfaug_compiler.generate.data_parallel PLAN STORE RECIPE_DIR STEP i/k``."""
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))  # take vLLM's children along
    from selfaug_compiler.generate.shards import parse_shard
    from selfaug_compiler.plan import Plan
    from selfaug_compiler.runner import Runner
    from selfaug_compiler.shard_run import run_shard

    plan_file, store, recipe_dir, name, shard = argv
    plan = Plan.load(Path(plan_file))
    runner = Runner(plan, store_path=Path(store), recipe_dir=Path(recipe_dir), echo=lambda s: print(s, flush=True))
    try:
        outcomes = run_shard(runner, [plan.step(name)], parse_shard(shard))
    except SelfaugError as e:
        print(e.render(), flush=True)
        return 1
    except StepFailed as e:
        print(str(e), flush=True)
        return 1
    what = outcomes[0][1] if outcomes else "nothing ran"
    if not what.startswith(f"shard {shard} staged") and what != "committed":
        print(f"shard {shard} of {name} did not run: {what}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
