"""The HTTP service (FastAPI): /v1/predict through the dynamic batcher, /v1/completions for causal-lm artifacts,
/v1/model, /healthz, /readyz, /metrics, /admin/reload, the page for people at /, and the OpenAPI docs at /docs."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..artifact import Artifact
from ..errors import TamerError
from . import completions as cmp
from .auth import Identity, KeyRing
from .batcher import DynamicBatcher, QueueFull
from .config import ServeConfig
from .metrics import CONTENT_TYPE, ServeMetrics
from .page import model_page, report_page
from .predictor import (CompletionBody, PredictRequest, PredictResponse, ReloadBody, body_schema, run_inputs)
from .slot import ModelSlot, Pin
from .validation import RequestError, check_inputs, read_json

log = logging.getLogger("tamer.serving")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-shaped error body (so the openai client shows the message)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


class PredictionCost:
    """The cost of one prediction as this worker serves it (what `tamer predict --json` reports for one call):
    model wall seconds and process CPU seconds per input, averaged over every batch since the model was loaded, and
    the forward FLOPs of the first input it was given (torch.utils.flop_counter, as every verb counts them).
    The CPU seconds are the process's while a batch ran: torch's threads, and any HTTP work that overlapped."""

    def __init__(self, metrics: ServeMetrics):
        self.metrics, self.totals, self.flops = metrics, {}, {}

    def run(self, served: Any, inputs: list[Any], max_new_tokens: int) -> list[dict[str, Any]]:
        if served.id not in self.flops:
            self.flops[served.id] = _forward_flops(served, inputs[:1], max_new_tokens)
        wall, cpu = time.perf_counter(), time.process_time()
        out = run_inputs(served, inputs, max_new_tokens)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        n, w, c = self.totals.get(served.id, (0, 0.0, 0.0))
        self.totals[served.id] = (n + len(inputs), w + wall, c + cpu)
        self.metrics.predictions.inc(len(inputs))
        self.metrics.model_seconds.inc(wall)
        self.metrics.model_cpu_seconds.inc(cpu)
        return out

    def record(self, model_id: str) -> dict[str, Any]:
        n, wall, cpu = self.totals.get(model_id, (0, 0.0, 0.0))
        return {"per": "prediction", "count": n, "wall_s": wall / n if n else None, "cpu_s": cpu / n if n else None,
                "flops_forward": self.flops.get(model_id),
                "note": "this worker's /v1/predict batches of this model; wall and CPU seconds of a batch divided by "
                        "its inputs, so batching lowers them"}


def _forward_flops(served: Any, inputs: list[Any], max_new_tokens: int) -> float | None:
    """FLOPs of one input through the model (torch.utils.flop_counter), or None for kernels the counter cannot
    follow."""
    from ..cost import flop_counter

    try:
        with flop_counter() as counter:
            run_inputs(served, inputs, max_new_tokens)
    except Exception:
        return None
    return counter.get_total_flops() / len(inputs)


class ServerState:
    """What one worker holds: the model slot, the batcher, the metrics and whether it still accepts work."""

    def __init__(self, slot: ModelSlot, config: ServeConfig, keys: KeyRing | None):
        self.slot, self.config, self.keys = slot, config, keys
        self.metrics = ServeMetrics()
        self.cost = PredictionCost(self.metrics)
        self.batcher = DynamicBatcher(lambda served, xs: self.cost.run(served, xs, config.max_new_tokens),
                                      config.max_batch_size, config.max_wait_ms, config.max_queue,
                                      on_batch=self.metrics.batch_size.observe, on_depth=self.metrics.queue_depth.set)
        self.draining = False

    def served(self):
        if self.slot.current is None:
            raise RequestError(503, "the model is still loading; retry shortly (see /readyz).", {"Retry-After": "1"})
        return self.slot.current

    def identify(self, request: Request, role: str = "client") -> Identity | None:
        """The caller's identity; 401 without a valid key, 403 for a client key on an admin route."""
        if self.keys is None:
            if role == "admin":
                raise RequestError(403, "admin routes need an admin key; start the server with --api-key-file.")
            return None
        who = self.keys.identify(request.headers.get("authorization"))
        if who is None:
            raise RequestError(401, "a valid API key is required: send `Authorization: Bearer KEY`.",
                               {"WWW-Authenticate": "Bearer"})
        if role == "admin" and who.role != "admin":
            raise RequestError(403, f"key {who.name!r} is a client key; /admin routes need an admin key.")
        return who

    async def reload(self, ref: str | None, pin: bool = False, unpin: bool = False) -> dict[str, Any]:
        """Swap in `ref` (pinned for every worker with `pin`), or what the source names (`unpin`: forget an
        admin's pin first); the metrics follow."""
        before = self.slot.current
        try:
            if unpin:
                self.slot.pin.set(None)
            served, changed = await self.slot.reload(ref, pin=pin)
        except TamerError as exc:
            raise RequestError(409 if "start another server" in str(exc) else 400, str(exc)) from None
        if changed:
            self.metrics.serving(served.id, served.artifact.task)
            if before is not None:
                self.metrics.swaps.inc()
        return {"model": served.id, "previous": before.id if before else None, "changed": changed}


def create_app(opener: Callable[[str], Artifact], source: Callable[[], str], config: ServeConfig | None = None,
               keys: KeyRing | None = None, pin: Pin | None = None) -> FastAPI:
    """The service for the artifact that `source()` names, opened with `opener` (sealed ones in memory). `keys`
    None serves without keys (the caller decided so explicitly); `pin` shares admin reloads between workers."""
    config = config or ServeConfig()
    state = ServerState(ModelSlot(opener, source, pin), config, keys)

    async def first_load() -> None:
        try:
            await state.reload(None, pin=False)
        except RequestError as exc:
            log.error("the model did not load: %s", exc.message)

    def on_signal(previous):
        def handler(signum, frame):  # shutdown begins: not ready any more, and queued inputs run without waiting
            state.draining = True
            state.batcher.flush()
            if callable(previous):
                previous(signum, frame)
        return handler

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher.start()
        if threading.current_thread() is threading.main_thread():  # uvicorn's own handlers are in place by now
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, on_signal(signal.getsignal(sig)))
        tasks = [asyncio.create_task(first_load())]
        if config.poll_seconds > 0:
            tasks.append(asyncio.create_task(follow(config.poll_seconds)))
        try:
            yield
        finally:  # uvicorn has stopped accepting and answered the open requests; finish what is queued
            state.draining = True
            await state.batcher.drain(config.drain_seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.batcher.stop()

    async def follow(seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if state.slot.current is None:
                continue
            with contextlib.suppress(RequestError):
                await state.reload(None, pin=False)

    app = FastAPI(title="tamer serve", version="1", lifespan=lifespan,
                  description="A tamer artifact as a service. Send `Authorization: Bearer KEY` unless the server "
                              "runs with --no-auth.")
    app.state.tamer = state

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}.")

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
        return error_response(500, f"the model failed on this request ({type(exc).__name__}); the server goes on.")

    app.add_middleware(Measured, metrics=state.metrics, failed=failed)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict:
        """The process is alive (it may still be loading its model)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz():
        """Ready once the model is loaded and until shutdown begins; 503 otherwise."""
        current = state.slot.current
        if current is None or state.draining:
            return JSONResponse({"status": "draining" if state.draining else "loading"}, 503)
        return {"status": "ready", "model": current.id, "worker": os.getpid()}

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        """Prometheus text format; under --workers K, the counts of every worker (see serving/metrics.py)."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/model", tags=["model"])
    async def model_card(request: Request) -> dict:
        """The served artifact: id, task, kind, labels, test metrics, format, lineage."""
        state.identify(request)
        served = state.served()
        return {**served.card(), "swaps": state.slot.swaps, "cost": state.cost.record(served.id),
                "batching": {"max_batch_size": config.max_batch_size, "max_wait_ms": config.max_wait_ms}}

    @app.get("/v1/model/report", tags=["model"], response_class=HTMLResponse)
    async def model_report(request: Request) -> HTMLResponse:
        """The artifact's page: what its manifest records (lineage, format, options, test metrics)."""
        state.identify(request)
        return HTMLResponse(report_page(state.served().artifact))

    @app.post("/v1/predict", tags=["model"], response_model=PredictResponse, response_model_exclude_none=True,
              openapi_extra=body_schema(PredictRequest))
    async def predict(request: Request) -> dict:
        """Labels and probabilities (classifiers) or generated text (causal-lm), one per input, with the id of the
        model that answered. Inputs of concurrent requests are batched."""
        state.identify(request)
        served = state.served()  # this request finishes on this model, whatever is swapped in meanwhile
        body = await read_json(request, config.max_body_bytes)
        inputs = await asyncio.to_thread(check_inputs, served.task, body, config.max_inputs, config.max_text_chars) \
            if _heavy(body) else check_inputs(served.task, body, config.max_inputs, config.max_text_chars)
        try:
            rows = await state.batcher.submit(served, inputs)
        except QueueFull as exc:
            raise RequestError(503, f"the server is at capacity ({exc}); retry shortly.", {"Retry-After": "1"}) from None
        # answered as JSON directly: FastAPI's validation of this response against the schema its docs show would cost
        # as much event-loop time as the HTTP work of the request itself
        return JSONResponse({"model": served.id, "predictions": [{**row, "model": served.id} for row in rows]})

    @app.post("/v1/completions", tags=["model"], openapi_extra=body_schema(CompletionBody))
    async def completions(request: Request):
        """A subset of OpenAI's completions API for causal-lm artifacts (prompt, max_tokens, temperature, top_p,
        stop, seed, stream)."""
        state.identify(request)
        served = state.served()
        if served.task.kind != "language-model":
            raise RequestError(404, f"/v1/completions serves causal-lm artifacts; this one is a {served.task.kind} "
                                    f"model: use /v1/predict.")
        body = cmp.parse_completion(await read_json(request, config.max_body_bytes), config.max_tokens,
                                    config.max_text_chars)
        try:
            gen = await state.batcher.call(cmp.Generation, served, body)
        except TamerError as exc:
            raise RequestError(422, f"prompt: {exc}") from None
        cid = cmp.new_id()
        if not body.stream:
            text, finish = "", None
            async for piece, finish in cmp.generate(state.batcher.call, gen):
                text += piece
            n = len(gen.ids) - gen.prompt_tokens
            state.metrics.tokens.inc(n)
            return cmp.completion_object(cid, served.id, text, finish, cmp.usage(gen.prompt_tokens, n))

        async def events():
            async for piece, finish in cmp.generate(state.batcher.call, gen):
                yield cmp.sse(cmp.completion_object(cid, served.id, piece, finish))
            state.metrics.tokens.inc(len(gen.ids) - gen.prompt_tokens)
            yield cmp.sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/admin/reload", tags=["operations"], openapi_extra=body_schema(ReloadBody, required=False))
    async def admin_reload(request: Request) -> dict:
        """Load a new model in the background and swap it in atomically (admin key). With `artifact`, serve that
        one (every worker follows); without, re-read the model source. Requests in flight finish on the old model."""
        who = state.identify(request, "admin")
        body = {}
        if request.headers.get("content-length", "0") != "0" or request.headers.get("transfer-encoding"):
            body = await read_json(request, config.max_body_bytes)
        if not isinstance(body, dict) or set(body) - {"artifact"} or not isinstance(body.get("artifact", ""), str):
            raise RequestError(422, "the reload body is {} or {\"artifact\": \"PATH\"}.")
        artifact = body.get("artifact")
        result = await state.reload(artifact, pin=artifact is not None, unpin=artifact is None)
        log.info("reload by %s: %s", who.name if who else "?", result)
        return result

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(model_page(auth=keys is not None))

    return app


class Measured:
    """Counts every request by route and status code and times it (pure ASGI: Starlette's `BaseHTTPMiddleware`
    spawns a task group per request, which cost a quarter of the event loop's time under load). An exception no
    handler turned into a response becomes the 500 body of `failed`, and the server goes on."""

    def __init__(self, app: Any, metrics: ServeMetrics, failed: Callable):
        self.app, self.metrics, self.failed = app, metrics, failed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [0]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if status[0]:  # the answer had begun: nothing more can be said on this connection
                raise
            await (await self.failed(Request(scope), exc))(scope, receive, sending)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "other"), status[0] or 500, time.perf_counter() - start)


def _heavy(body: Any) -> bool:
    """A body big enough that checking it belongs off the event loop."""
    return isinstance(body, dict) and isinstance(body.get("inputs"), list) and len(body["inputs"]) > 8
