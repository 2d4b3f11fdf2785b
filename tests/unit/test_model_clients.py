"""Model clients: the local simulation is deterministic and near the flagship figures; prices add up;
the OpenAI-compatible client maps a real HTTP server's answers (and failures) onto the ModelError family."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from processors.models import (
    LocalModel,
    Message,
    ModelBadResponse,
    ModelConfigError,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelRequest,
    ModelResponse,
    ModelTimeout,
    ModelUnavailable,
    OpenAICompatibleClient,
    Price,
    PriceTable,
    PurposeProfile,
    Simulation,
    UnknownModelPrice,
    client_from_env,
    cost,
)
from tests.helpers import claim_prompt

T = TypeVar("T")
FAST = 10_000.0  # speed factor: a simulated 1.1 s call sleeps 0.11 ms


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- the local simulation ---------------------------------------------------------------------------


def test_local_model_gives_the_same_response_to_the_same_request() -> None:
    model = LocalModel(speed=FAST)
    request = ModelRequest.of("severity", claim_prompt(), seed=42)
    first, second = run(model.complete(request)), run(LocalModel(speed=FAST).complete(request))
    assert first == second
    assert first.to_json() == second.to_json()


def test_local_model_text_changes_with_seed_prompt_and_purpose() -> None:
    model = LocalModel(speed=FAST)
    base = run(model.complete(ModelRequest.of("severity", claim_prompt(), seed=1))).text
    other_seed = run(model.complete(ModelRequest.of("severity", claim_prompt(), seed=2))).text
    other_prompt = run(model.complete(ModelRequest.of("severity", claim_prompt() + " Also the door.", seed=1))).text
    other_purpose = run(model.complete(ModelRequest.of("judge", claim_prompt(), seed=1))).text
    assert len({base, other_seed, other_prompt, other_purpose}) == 4


def test_a_workloads_simulation_shapes_its_purposes_and_others_get_generic_answers() -> None:
    def answer(prompt: str, rng: random.Random) -> dict[str, Any]:
        return {"echo": prompt.split()[-1], "draw": round(rng.random(), 3)}

    sim = Simulation(profiles={"triage": PurposeProfile(50.0, 10, 10, 20)}, answers={"triage": answer})
    model = LocalModel(speed=FAST, simulation=sim)
    shaped = json.loads(run(model.complete(ModelRequest.of("triage", "look at this", seed=1))).text)
    assert shaped["echo"] == "this" and "draw" in shaped
    assert run(model.complete(ModelRequest.of("triage", "x", seed=1))).raw["simulated_latency_ms"] == pytest.approx(50, rel=0.06)
    generic = json.loads(run(model.complete(ModelRequest.of("other", "apples and pears and apples", seed=1))).text)
    assert generic["purpose"] == "other" and generic["summary"][0] == "apples"
    merged = Simulation.merged([None, sim, Simulation(profiles={"triage": PurposeProfile(1.0, 1, 1, 1)})])
    assert merged.profiles["triage"].latency_ms == 50.0  # the first to name a purpose wins


def test_bigger_prompts_cost_more() -> None:
    model = LocalModel(speed=FAST)
    small = run(model.complete(ModelRequest.of("severity", "short claim", seed=1)))
    large = run(model.complete(ModelRequest.of("severity", "a long claim description " * 400, seed=1)))
    assert large.tokens_in > small.tokens_in + 2000
    assert large.cost_usd > small.cost_usd


def test_local_model_times_out_when_the_simulated_call_is_longer_than_the_timeout() -> None:
    request = ModelRequest.of("vision", claim_prompt(), timeout_s=0.02)  # vision takes ~1.1 s at speed 1
    with pytest.raises(ModelTimeout) as caught:
        run(LocalModel(speed=1.0).complete(request))
    assert caught.value.retryable and caught.value.purpose == "vision"


def test_speed_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_MODEL_SPEED", "250")
    assert LocalModel().speed == 250.0
    monkeypatch.setenv("DURABLE_MODEL_SPEED", "fast")
    with pytest.raises(ModelConfigError, match="DURABLE_MODEL_SPEED"):
        LocalModel()
    with pytest.raises(ModelConfigError):
        LocalModel(speed=0)


# --- requests, responses, errors ---------------------------------------------------------------------


def test_a_response_round_trips_through_json_exactly() -> None:
    response = run(LocalModel(speed=FAST).complete(ModelRequest.of("judge", claim_prompt(), seed=9)))
    assert ModelResponse.from_json(response.to_json()) == response
    odd = ModelResponse("é ✓", "m", 1, 2, 0.1 + 0.2, 1 / 3, {"nested": [1, {"x": None}], "f": 1e-300})
    assert ModelResponse.from_json(odd.to_json()) == odd
    with pytest.raises(ValueError):
        ModelResponse.from_json('{"text": "no other fields"}')
    with pytest.raises(ValueError):
        ModelResponse.from_json(odd.to_json().replace('"tokens_in":1', '"tokens_in":true'))


def test_responses_refuse_raw_data_that_would_not_replay() -> None:
    with pytest.raises(ValueError):
        ModelResponse("t", "m", 1, 1, 0.0, 1.0, {"labels": ("a", "b")})
    with pytest.raises(ValueError):
        ModelResponse("t", "m", 1, 1, 0.0, 1.0, {"score": float("nan")})


def test_requests_are_validated() -> None:
    with pytest.raises(ValueError):
        ModelRequest(purpose="plan", messages=())
    with pytest.raises(ValueError):
        ModelRequest.of("plan", "hi", max_tokens=0)
    with pytest.raises(ValueError):
        Message("robot", "hi")
    request = ModelRequest.of("plan", "hi", system="be brief")
    assert request.prompt_text() == "system: be brief\nuser: hi"


def test_errors_say_whether_a_retry_can_help() -> None:
    assert ModelTimeout("t").retryable
    assert ModelRateLimited("r", retry_after_s=2.0).retryable
    assert ModelUnavailable("u", status=503).retryable
    assert not ModelBadResponse("b").retryable
    assert not ModelRejected("x", status=401).retryable
    assert not UnknownModelPrice("p").retryable
    assert all(issubclass(e, ModelError) for e in (ModelTimeout, ModelRateLimited, ModelUnavailable, ModelBadResponse))


# --- prices ------------------------------------------------------------------------------------------


def test_cost_is_tokens_times_price_per_million() -> None:
    table = PriceTable({"m": Price(2.0, 8.0)})
    assert table.cost("m", 1_000_000, 0) == pytest.approx(2.0)
    assert table.cost("m", 250, 100) == pytest.approx((250 * 2.0 + 100 * 8.0) / 1e6)
    assert cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.15 + 0.60)
    assert cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)  # a dated snapshot
    assert cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.50)  # longest match, not gpt-4o-mini


def test_an_unknown_model_has_no_price() -> None:
    with pytest.raises(UnknownModelPrice, match="DURABLE_MODEL_PRICES"):
        cost("mystery-model", 10, 10)


def test_prices_can_be_overridden_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DURABLE_MODEL_PRICES", '{"mystery-model": {"input": 1, "output": 3}, "gpt-4o": {"input": 0, "output": 0}}'
    )
    assert cost("mystery-model", 1_000_000, 1_000_000) == pytest.approx(4.0)
    assert cost("gpt-4o", 1000, 1000) == 0.0
    assert cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)  # defaults not overridden stay
    monkeypatch.setenv("DURABLE_MODEL_PRICES", '{"m": {"in": 1}}')
    with pytest.raises(ModelConfigError, match="DURABLE_MODEL_PRICES"):
        cost("m", 1, 1)


# --- the OpenAI-compatible client against a real local HTTP server ------------------------------------


@dataclass
class Reply:
    """What the fake server answers to the next completion request."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # answer only when the test ends: the client must time out first


@dataclass
class Seen:
    headers: dict[str, str]
    body: dict[str, Any]


def completion(text: str = "ROUTED", *, model: str = "fake-1", tokens_in: int = 120, tokens_out: int = 30) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }
    ).encode()


class FakeOpenAI:
    """A chat-completions server on a loopback ephemeral port, scripted by the test."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(Reply(200, b"ok"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                fake.seen.append(Seen({k.lower(): v for k, v in self.headers.items()}, body))
                reply = fake.replies.pop(0) if fake.replies else Reply(body=completion())
                if reply.hold:
                    fake.release.wait(timeout=30)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                    self._send(reply)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.01)  # polling interval of the readiness loop, bounded by the deadline

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.start()
    try:
        yield server
    finally:
        server.stop()


PRICES = PriceTable({"fake-1": Price(2.0, 8.0)})


def client_for(fake: FakeOpenAI, **options: Any) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(fake.url, "fake-1", api_key="sk-test", prices=PRICES, **options)


def ask(fake: FakeOpenAI, request: ModelRequest | None = None, **options: Any) -> ModelResponse:
    async def go() -> ModelResponse:
        async with client_for(fake, **options) as client:
            return await client.complete(request or ModelRequest.of("severity", "how bad?", seed=11))

    return run(go())


def test_a_completion_carries_text_tokens_and_cost(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(body=completion('{"severity": "LOW"}', tokens_in=150, tokens_out=40)))
    response = ask(fake)
    assert response.text == '{"severity": "LOW"}'
    assert (response.tokens_in, response.tokens_out, response.model) == (150, 40, "fake-1")
    assert response.cost_usd == pytest.approx((150 * 2.0 + 40 * 8.0) / 1e6)
    assert response.latency_ms > 0
    assert response.raw["id"] == "chatcmpl-1"
    assert ModelResponse.from_json(response.to_json()) == response


def test_the_api_key_seed_and_options_are_sent(fake: FakeOpenAI) -> None:
    request = ModelRequest(
        purpose="judge",
        messages=(Message("system", "grade it"), Message("user", "decision")),
        max_tokens=64,
        temperature=0.2,
        seed=1234,
    )
    ask(fake, request)
    seen = fake.seen[-1]
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.body["seed"] == 1234
    assert seen.body["model"] == "fake-1"
    assert seen.body["max_tokens"] == 64 and seen.body["temperature"] == 0.2
    assert seen.body["messages"] == [{"role": "system", "content": "grade it"}, {"role": "user", "content": "decision"}]


def test_no_seed_is_sent_when_the_request_has_none(fake: FakeOpenAI) -> None:
    ask(fake, ModelRequest.of("plan", "hi"))
    assert "seed" not in fake.seen[-1].body


def test_a_slow_server_times_out_promptly(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(body=completion(), hold=True))
    started = time.monotonic()
    with pytest.raises(ModelTimeout) as caught:
        ask(fake, ModelRequest.of("vision", "photos", timeout_s=0.3))
    assert time.monotonic() - started < 5.0
    assert caught.value.retryable and caught.value.purpose == "vision"


def test_the_client_timeout_caps_the_request_timeout(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(body=completion(), hold=True))
    started = time.monotonic()
    with pytest.raises(ModelTimeout):
        ask(fake, ModelRequest.of("vision", "photos", timeout_s=60), timeout_s=0.3)
    assert time.monotonic() - started < 5.0


def test_429_is_rate_limited_with_its_retry_after(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "7"}))
    with pytest.raises(ModelRateLimited) as caught:
        ask(fake)
    assert caught.value.retry_after_s == 7.0
    assert caught.value.retryable


def test_429_without_retry_after_has_no_hint(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(429, b"{}"))
    with pytest.raises(ModelRateLimited) as caught:
        ask(fake)
    assert caught.value.retry_after_s is None


def test_500_is_unavailable(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(500, b'{"error": "boom"}'))
    with pytest.raises(ModelUnavailable) as caught:
        ask(fake)
    assert caught.value.status == 500 and caught.value.retryable


def test_401_is_rejected_and_not_retried(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(401, b'{"error": "bad key"}'))
    with pytest.raises(ModelRejected) as caught:
        ask(fake)
    assert caught.value.status == 401 and not caught.value.retryable


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway says hi</html>",
        b'{"choices": []}',
        b'{"choices": [{"message": {"role": "assistant", "content": "x"}}]}',  # no usage
        b'{"choices": [{"message": {"content": null}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}',
        b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "1", "completion_tokens": 1}}',
    ],
)
def test_a_malformed_body_is_a_bad_response(fake: FakeOpenAI, body: bytes) -> None:
    fake.replies.append(Reply(200, body))
    with pytest.raises(ModelBadResponse) as caught:
        ask(fake)
    assert not caught.value.retryable


def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def go() -> None:
        async with OpenAICompatibleClient(f"http://127.0.0.1:{port}/v1", "fake-1", prices=PRICES) as client:
            await client.complete(ModelRequest.of("plan", "hi", timeout_s=5))

    with pytest.raises(ModelUnavailable) as caught:
        run(go())
    assert caught.value.status is None


def test_the_client_is_configured_from_the_environment(fake: FakeOpenAI) -> None:
    env = {
        "DURABLE_MODEL_BASE_URL": fake.url,
        "DURABLE_MODEL_API_KEY": "sk-env",
        "DURABLE_MODEL_NAME": "fake-1",
        "DURABLE_MODEL_TIMEOUT_S": "4.5",
        "DURABLE_MODEL_PRICES": '{"fake-1": {"input": 1, "output": 1}}',
    }

    async def go() -> ModelResponse:
        client = client_from_env(env)
        assert isinstance(client, OpenAICompatibleClient) and client.timeout_s == 4.5
        async with client:
            return await client.complete(ModelRequest.of("plan", "hi"))

    response = run(go())
    assert fake.seen[-1].headers["authorization"] == "Bearer sk-env"
    assert response.cost_usd == pytest.approx(150 / 1e6)


def test_bad_configuration_fails_before_any_call() -> None:
    assert isinstance(client_from_env({}), LocalModel)
    with pytest.raises(ModelConfigError, match="DURABLE_MODEL_NAME"):
        OpenAICompatibleClient.from_env({"DURABLE_MODEL_BASE_URL": "http://127.0.0.1:9/v1"})
    with pytest.raises(ModelConfigError, match="DURABLE_MODEL_TIMEOUT_S"):
        OpenAICompatibleClient.from_env(
            {"DURABLE_MODEL_BASE_URL": "http://x/v1", "DURABLE_MODEL_NAME": "gpt-4o", "DURABLE_MODEL_TIMEOUT_S": "soon"}
        )
    with pytest.raises(UnknownModelPrice):
        OpenAICompatibleClient.from_env({"DURABLE_MODEL_BASE_URL": "http://x/v1", "DURABLE_MODEL_NAME": "mystery"})
