"""The ``openai`` backend: any OpenAI-compatible server (``/v1/chat/completions`` or ``/v1/completions``).

Plain ``urllib`` (no client library needed), a bounded thread pool (``max_concurrency``), retries
with exponential backoff on 429, 5xx, timeouts and refused connections (``max_retries``,
``backoff_s``), a per-request timeout (``request_timeout_s``). The key is read from the variable
named by ``api_key_env`` (default ``OPENAI_API_KEY``), never from a recipe, plan or store.
Each request carries its row's ``seed``; servers may ignore it and may batch requests together, so
rows are not promised batch-independent (``provenance()['batch_invariant'] is False``).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from selfaug_compiler.generate.backends.base import BackendError, BackendGeneration, batches_in_order, register
from selfaug_compiler.generate.engine import Generation, OnBatch, Prompt, SamplingParams, cut_at_stop

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


@register("openai")
class OpenAIBackend:
    kind = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 mode: str = "chat", max_concurrency: int = 8, max_retries: int = 4, backoff_s: float = 1.0,
                 request_timeout_s: float = 120.0) -> None:
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise BackendError("openai backend: no base_url and OPENAI_BASE_URL is not set; "
                               "set OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1) or the recipe's base_url")
        if mode not in ("chat", "completions"):
            raise BackendError(f"openai backend: mode must be chat or completions, not {mode!r}")
        self.base_url = url.rstrip("/")
        self.model, self.mode, self.api_key_env = model, mode, api_key_env
        self.max_concurrency, self.max_retries = max(1, int(max_concurrency)), max(0, int(max_retries))
        self.backoff_s, self.timeout = float(backoff_s), float(request_timeout_s)

    # ------------------------------------------------------------------ requests
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode(errors="replace")
                if e.code in RETRY_STATUS:
                    last = f"HTTP {e.code} {detail}"
                    continue
                if e.code == 404:
                    raise BackendError(f"{url} answered 404 for model {self.model!r}: {detail}; check the model name "
                                       f"against GET {self.base_url}/models (selfaug validate --online)") from None
                raise BackendError(f"{url} answered HTTP {e.code}: {detail}") from None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                # HTTPException: a connection cut mid-reply (server killed): IncompleteRead, BadStatusLine
                last = f"{getattr(e, 'reason', e)}"
                continue
            try:
                return json.loads(raw)
            except ValueError:
                raise BackendError(f"{url} sent a reply that is not JSON: {raw[:200]!r}") from None
        raise BackendError(f"{url}: no answer after {self.max_retries + 1} attempts (last: {last}); "
                           f"is the server running at {self.base_url}? The same command resumes after staged batches")

    def _one(self, prompt: Prompt, params: SamplingParams, seed: int, chat: bool | None) -> BackendGeneration:
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "top_p": params.top_p, "seed": seed}
        if params.stop:
            body["stop"] = list(params.stop)
        if self.mode == "chat":
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            reply = self._post("/chat/completions", {**body, "messages": messages})
        else:
            if chat:
                raise BackendError("openai backend in completions mode got a chat prompt; set mode: chat")
            if chat is None:  # a completion-style model: the training format (models/completion.py)
                from selfaug_compiler.models.completion import completion_prompt

                prompt = completion_prompt(prompt)
            elif isinstance(prompt, list):
                raise BackendError("openai backend in completions mode got a chat prompt; set mode: chat")
            reply = self._post("/completions", {**body, "prompt": prompt})
        gen = self._parse(reply)
        if params.stop:  # a server that ignores `stop` (some do) still gives the reply up to it
            text, hit = cut_at_stop(gen.text, params.stop)
            if hit:
                gen.text, gen.finish_reason = text.strip(), "stop"
        return gen

    def _parse(self, reply: Any) -> BackendGeneration:
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] if self.mode == "chat" else choice["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
            usage = reply.get("usage") or {}
            reason = "length" if choice.get("finish_reason") == "length" else "stop"
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise BackendError(f"{self.base_url}: malformed reply ({e}): {json.dumps(reply)[:200]}") from None
        meta = {"served_model": reply.get("model")}
        if reply.get("system_fingerprint"):
            meta["system_fingerprint"] = reply["system_fingerprint"]
        return BackendGeneration(text=text.strip(), prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                 new_tokens=int(usage.get("completion_tokens") or 0), finish_reason=reason, meta=meta)

    # ------------------------------------------------------------------ protocol
    def generate(self, prompts: list[Prompt], params: SamplingParams, *, seeds: list[int],
                 batch_size: int = 16, chat: bool | None = None, on_batch: OnBatch | None = None,
                 progress: bool | Callable[..., None] = False) -> list[Generation]:
        results: list[Generation] = []
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            for batch in batches_in_order(len(prompts), batch_size):
                gens = list(pool.map(lambda i: self._one(prompts[i], params, seeds[i], chat), batch))
                results.extend(gens)
                if on_batch is not None:
                    on_batch(batch, gens)
                if callable(progress):
                    progress(len(results), len(prompts), unit="prompts")
        return results

    def list_models(self) -> list[str]:
        """The ids of GET /models (for ``selfaug validate --online``)."""
        reply = self._request("GET", "/models")
        try:
            return [m["id"] for m in reply["data"]]
        except (KeyError, TypeError) as e:
            raise BackendError(f"{self.base_url}/models: malformed reply ({e})") from None

    def provenance(self) -> dict[str, Any]:
        return {"backend": self.kind, "model": self.model, "mode": self.mode, "batch_invariant": False}
