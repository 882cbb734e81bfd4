"""The conformance scenarios: agent runs ported from the scenarios of Pydantic AI's own durable-engine
tests (DBOS, Prefect, Temporal), each made durable with `NexumDurability`.

A scenario is `async def name(env) -> dict`: it builds its agents (a `FunctionModel` that notes each
request it answers in the ledger, tools that note each side effect), runs them in `env.session_id`
(None: plain Pydantic AI, the capability changes nothing) and returns what the run gave as JSON
data. The tests run each one plainly, durably, and again in another process (`tests/durable/run.py`)
with the same session, where everything must come from the store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic_ai import (
    Agent,
    DeferredToolRequests,
    DeferredToolResults,
    FunctionToolset,
    ModelRetry,
    NativeOutput,
    PromptedOutput,
    RunContext,
    TextOutput,
    ToolDenied,
    ToolOutput,
    UsageLimits,
)
from pydantic_ai.exceptions import ApprovalRequired, CallDeferred, ToolFailed, UsageLimitExceeded
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from pydantic_ai.toolsets import DynamicToolset

from nexum_pydantic_ai import NexumDurability
from tests.durable.ledger import LEDGER_VARIABLE, note

_JSON = TypeAdapter(Any)
ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Env:
    """Where a scenario runs and where it notes what it did."""

    session_id: str | None
    url: str
    ledger: Path
    crash_at: int | None = None
    """Kill this process with SIGKILL when it is about to answer its N-th model request."""
    asked: int = 0

    def answered(self, agent: str) -> None:
        self.asked += 1
        if self.crash_at == self.asked:
            os.kill(os.getpid(), signal.SIGKILL)
        note("model", agent, self.ledger)

    def effect(self, what: str) -> None:
        note("effect", what, self.ledger)

    def durable(self, **kwargs: Any) -> NexumDurability[Any]:
        return NexumDurability(session_id=self.session_id, url=self.url, **kwargs)


Script = Callable[[list[ModelMessage], AgentInfo], ModelResponse]


def model(env: Env, agent: str, script: Script) -> FunctionModel:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        env.answered(agent)
        return script(messages, info)

    return FunctionModel(answer)


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    """The tool results of this run's last request, in the order of their calls."""
    last = messages[-1]
    return [p for p in last.parts if isinstance(p, ToolReturnPart)] if isinstance(last, ModelRequest) else []


def responses(messages: list[ModelMessage]) -> int:
    return sum(isinstance(m, ModelResponse) for m in messages)


def every_return(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]


def call(name: str, args: dict[str, Any] | None = None, call_id: str | None = None) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(name, args or {}, tool_call_id=call_id or f"call-{name}")])


def text(content: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(content)])


def data(value: Any) -> Any:
    return _JSON.dump_python(value, mode="json")


def usage_of(result: Any) -> dict[str, int]:
    usage = result.usage
    return {
        "requests": usage.requests,
        "tool_calls": usage.tool_calls,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }


SCENARIOS: dict[str, Callable[[Env], Awaitable[dict[str, Any]]]] = {}


def scenario(fn: Callable[[Env], Awaitable[dict[str, Any]]]) -> Callable[[Env], Awaitable[dict[str, Any]]]:
    SCENARIOS[fn.__name__] = fn
    return fn


# --- simple and complex runs ---------------------------------------------------------------------


@scenario
async def simple(env: Env) -> dict[str, Any]:
    agent = Agent(
        model(env, "simple", lambda m, i: text("The capital of Mexico is Mexico City.")),
        name="simple",
        capabilities=[env.durable()],
    )
    result = await agent.run("What is the capital of Mexico?")
    return {"output": result.output}


class Deps(BaseModel):
    country: str


class WeatherArgs(BaseModel):
    city: str


@dataclass
class Answer:
    label: str
    answer: str


@dataclass
class Response:
    answers: list[Answer]


def complex_agent(env: Env, name: str = "complex", durable: bool = True) -> Agent[Deps, Response]:
    """DBOS's complex agent without its external and MCP toolsets: deps, a toolset with an id, a
    tool with a model argument, two parallel calls, and a structured output through the output tool.
    Not `durable`: each run brings the capability."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = {p.tool_name: p.content for p in every_return(messages)}
        if "get_country" not in done:
            return call("get_country", {}, "c1")
        if "get_weather" not in done:
            return ModelResponse(
                parts=[
                    ToolCallPart("get_weather", {"args": {"city": "Mexico City"}}, tool_call_id="c2"),
                    ToolCallPart("get_product_name", {}, tool_call_id="c3"),
                ]
            )
        answers = [
            {"label": "Capital of the Country", "answer": f"{done['get_country']} City"},
            {"label": "Weather in Mexico City", "answer": done["get_weather"]},
            {"label": "Product Name", "answer": done["get_product_name"]},
        ]
        return call(info.output_tools[0].name, {"answers": answers}, "c4")

    def get_country(ctx: RunContext[Deps]) -> str:
        env.effect("get_country")
        return ctx.deps.country

    def get_weather(args: WeatherArgs) -> str:
        env.effect(f"get_weather {args.city}")
        return "sunny" if args.city == "Mexico City" else "unknown"

    def get_product_name() -> str:
        env.effect("get_product_name")
        return "Pydantic AI"

    return Agent(
        model(env, name, script),
        name=name,
        deps_type=Deps,
        output_type=Response,
        toolsets=[FunctionToolset[Deps](tools=[get_country], id="country")],
        tools=[get_weather, get_product_name],
        capabilities=[env.durable()] if durable else [],
    )


COMPLEX_PROMPT = "Tell me: the capital of the country; the weather there; the product name"


@scenario
async def complex_run(env: Env) -> dict[str, Any]:
    result = await complex_agent(env).run(COMPLEX_PROMPT, deps=Deps(country="Mexico"))
    return {"output": data(result.output)}


@scenario
async def capability_per_run(env: Env) -> dict[str, Any]:
    """One agent for many sessions: the session comes with the run, not with the agent."""
    agent = complex_agent(env, "per-run", durable=False)
    result = await agent.run(COMPLEX_PROMPT, deps=Deps(country="Mexico"), capabilities=[env.durable()])
    return {"output": data(result.output)}


@scenario
async def sequential_tools(env: Env) -> dict[str, Any]:
    with Agent.parallel_tool_call_execution_mode("sequential"):
        result = await complex_agent(env, "sequential").run(COMPLEX_PROMPT, deps=Deps(country="Mexico"))
    return {"output": data(result.output)}


@scenario
async def parallel_tools(env: Env) -> dict[str, Any]:
    """Three calls in one response, two of them identical: plain Pydantic AI runs all three."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(" ".join(str(p.content) for p in done))
        return ModelResponse(
            parts=[
                ToolCallPart("add", {"a": 1, "b": 2}, tool_call_id="p1"),
                ToolCallPart("add", {"a": 1, "b": 2}, tool_call_id="p2"),
                ToolCallPart("add", {"a": 3, "b": 4}, tool_call_id="p3"),
            ]
        )

    agent = Agent(model(env, "parallel", script), name="parallel", capabilities=[env.durable()])

    @agent.tool_plain
    async def add(a: int, b: int) -> int:
        env.effect(f"add {a} {b}")
        await asyncio.sleep(0.01 * (5 - a))  # finish out of order
        return a + b

    result = await agent.run("add")
    return {"output": result.output}


# --- output modes, retries, usage limits -----------------------------------------------------------


class City(BaseModel):
    city: str
    country: str


MEXICO = {"city": "Mexico City", "country": "Mexico"}


def shout(text: str) -> str:
    return text.upper()


def output_agent(env: Env, mode: str) -> Agent[None, Any]:
    output_type: Any = {
        "tool": ToolOutput(City, name="final_city"),
        "native": NativeOutput(City),
        "prompted": PromptedOutput(City),
        "text_function": TextOutput(shout),
        "text": str,
    }[mode]

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not returns(messages):
            return call("lookup", {"q": "capital of Mexico"}, "o1")
        if mode == "tool":
            return call(info.output_tools[0].name, MEXICO, "o2")
        if mode in ("native", "prompted"):
            return text('{"city": "Mexico City", "country": "Mexico"}')
        return text("Mexico City, Mexico")

    agent = Agent(
        model(env, f"output-{mode}", script),
        name=f"output-{mode}",
        output_type=output_type,
        capabilities=[env.durable()],
    )

    @agent.tool_plain
    def lookup(q: str) -> str:
        env.effect(f"lookup {q}")
        return "Mexico City"

    return agent


async def _output_mode(env: Env, mode: str) -> dict[str, Any]:
    result = await output_agent(env, mode).run("Where?")
    return {"output": data(result.output)}


for _mode in ("tool", "native", "prompted", "text_function", "text"):

    async def _run(env: Env, mode: str = _mode) -> dict[str, Any]:
        return await _output_mode(env, mode)

    SCENARIOS[f"output_{_mode}"] = _run


@scenario
async def output_validator_retry(env: Env) -> dict[str, Any]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return text("Mexico City" if responses(messages) else "Paris")

    agent = Agent(model(env, "validator", script), name="validator", capabilities=[env.durable()])

    @agent.output_validator
    def capital_of_mexico(output: str) -> str:
        if output != "Mexico City":
            raise ModelRetry("That is not in Mexico")
        return output

    result = await agent.run("What is the capital of Mexico?")
    return {"output": result.output, "usage": usage_of(result)}


@scenario
async def tool_model_retry(env: Env) -> dict[str, Any]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = returns(messages)
        if done and done[0].outcome == "success":
            return text(f"It is {done[0].content}")
        if done:  # the tool asked the model to try again
            return call("get_weather_in_city", {"city": "Mexico City"}, "r2")
        return call("get_weather_in_city", {"city": "CDMX"}, "r1")

    agent = Agent(model(env, "retry", script), name="retry", capabilities=[env.durable()])

    @agent.tool_plain
    def get_weather_in_city(city: str) -> str:
        env.effect(f"get_weather_in_city {city}")
        if city != "Mexico City":
            raise ModelRetry("Did you mean Mexico City?")
        return "sunny"

    result = await agent.run("What is the weather in CDMX?")
    return {"output": result.output}


@scenario
async def tool_failed(env: Env) -> dict[str, Any]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(f"{done[0].content} ({done[0].outcome})")
        return call("failing_tool", {}, "f1")

    agent = Agent(model(env, "failed", script), name="failed", capabilities=[env.durable()])

    @agent.tool_plain
    def failing_tool() -> str:
        env.effect("failing_tool")
        raise ToolFailed("Disk full")

    result = await agent.run("Call the failing tool")
    return {"output": result.output}


@scenario
async def usage_limit(env: Env) -> dict[str, Any]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        step = len(every_return(messages))
        return call("step", {"n": step}, f"u{step}")

    agent = Agent(model(env, "limited", script), name="limited", capabilities=[env.durable()])

    @agent.tool_plain
    def step(n: int) -> int:
        env.effect(f"step {n}")
        return n

    try:
        await agent.run("Go on forever", usage_limits=UsageLimits(request_limit=3))
    except UsageLimitExceeded as e:
        return {"output": f"{type(e).__name__}: {e}"}
    return {"output": "no limit hit"}


@scenario
async def usage_and_run_ids(env: Env) -> dict[str, Any]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(f"found {done[0].content}")
        return call("lookup", {"q": "x"}, "i1")

    agent = Agent(model(env, "ids", script), name="ids", capabilities=[env.durable()])

    @agent.tool_plain
    def lookup(q: str) -> str:
        env.effect(f"lookup {q}")
        return "it"

    first = await agent.run("first")
    second = await agent.run("second")
    return {
        "output": [first.output, second.output],
        "usage": [usage_of(first), usage_of(second)],
        "run_ids": [first.run_id, second.run_id],
        "message_run_ids": [[m.run_id for m in r.all_messages()] for r in (first, second)],
    }


# --- deps and metadata -------------------------------------------------------------------------------


class User(BaseModel):
    name: str


def whoami_agent(env: Env, **durable: Any) -> Agent[Any, str]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(f"hello {done[0].content}")
        return call("whoami", {}, "w1")

    agent = Agent(model(env, "whoami", script), name="whoami", capabilities=[env.durable(**durable)])

    @agent.tool
    def whoami(ctx: RunContext[Any]) -> str:
        env.effect(f"whoami {ctx.deps.name}")
        return ctx.deps.name

    return agent


@scenario
async def deps_differ(env: Env) -> dict[str, Any]:
    agent = whoami_agent(env)
    alice = await agent.run("who am I?", deps=User(name="alice"))
    bob = await agent.run("who am I?", deps=User(name="bob"))
    return {"output": [alice.output, bob.output]}


@scenario
async def metadata_differ(env: Env) -> dict[str, Any]:
    """Prefect's regression (pydantic-ai issue 6903): two runs differing only in `metadata`."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(str(done[0].content))
        return ModelResponse(parts=[ToolCallPart("echo_metadata")])  # the framework makes up the id

    agent = Agent(model(env, "metadata", script), name="metadata", capabilities=[env.durable()])

    @agent.tool
    def echo_metadata(ctx: RunContext[None]) -> str:
        assert ctx.metadata is not None
        env.effect(f"echo_metadata {ctx.metadata['tenant']}")
        return f"tenant={ctx.metadata['tenant']}"

    first = await agent.run("same question", metadata={"tenant": "a"})
    second = await agent.run("same question", metadata={"tenant": "b"})
    return {"output": [first.output, second.output]}


@dataclass
class Connection:
    """Deps that are not data: a lock stands for a client or a database connection."""

    name: str
    lock: threading.Lock = field(default_factory=threading.Lock)


@scenario
async def non_json_deps(env: Env) -> dict[str, Any]:
    result = await whoami_agent(env).run("who am I?", deps=Connection("carol"))
    return {"output": result.output}


@scenario
async def non_json_deps_with_key(env: Env) -> dict[str, Any]:
    agent = whoami_agent(env, deps_key=lambda deps: deps.name)
    carol = await agent.run("who am I?", deps=Connection("carol"))
    dave = await agent.run("who am I?", deps=Connection("dave"))
    return {"output": [carol.output, dave.output]}


# --- iter, streams, the event stream handler ----------------------------------------------------------


def lookup_then_answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if done := returns(messages):
        return text(f"The capital is {done[0].content}.")
    return call("lookup", {"q": "capital"}, "s1")


def lookup_agent(env: Env, name: str, **durable: Any) -> Agent[None, str]:
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
        env.answered(name)
        if done := returns(messages):
            for piece in ("The capital ", "is ", f"{done[0].content}."):
                yield piece
        else:
            yield {0: DeltaToolCall(name="lookup", json_args='{"q": "capital"}', tool_call_id="s1")}

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        env.answered(name)
        return lookup_then_answer(messages, info)

    agent = Agent(FunctionModel(answer, stream_function=stream), name=name, capabilities=[env.durable(**durable)])

    @agent.tool_plain
    def lookup(q: str) -> str:
        env.effect(f"lookup {q}")
        return "Mexico City"

    return agent


@scenario
async def agent_iter(env: Env) -> dict[str, Any]:
    nodes = []
    async with lookup_agent(env, "iter").iter("capital?") as run:
        async for node in run:
            nodes.append(type(node).__name__)
    assert run.result is not None
    return {"output": run.result.output, "nodes": nodes}


@scenario
async def run_stream(env: Env) -> dict[str, Any]:
    async with lookup_agent(env, "stream").run_stream("capital?") as result:
        deltas = [delta async for delta in result.stream_text(delta=True, debounce_by=None)]
        output = await result.get_output()
    return {"output": output, "deltas": deltas}


@scenario
async def run_stream_events(env: Env) -> dict[str, Any]:
    kinds, output = [], None
    async with lookup_agent(env, "events").run_stream_events("capital?") as events:
        async for event in events:
            kinds.append(event.event_kind)
            if event.event_kind == "agent_run_result":
                output = event.result.output
    return {"output": output, "events": kinds}


@scenario
async def event_stream_handler(env: Env) -> dict[str, Any]:
    kinds: list[str] = []

    async def handler(ctx: RunContext[Any], stream: AsyncIterable[AgentStreamEvent]) -> None:
        async for event in stream:
            kinds.append(event.event_kind)

    result = await lookup_agent(env, "handled", event_stream_handler=handler).run("capital?")
    return {"output": result.output, "events": kinds}


# --- several turns and approvals ------------------------------------------------------------------------


def cart_agent(env: Env) -> Agent[None, str]:
    cart: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(f"The cart has {done[0].content}")
        turn = sum(isinstance(m, ModelResponse) and any(isinstance(p, TextPart) for p in m.parts) for m in messages)
        return call("add_item", {"item": "apple"}, f"cart-{turn}")

    agent = Agent(model(env, "cart", script), name="cart", capabilities=[env.durable()])

    @agent.tool_plain
    def add_item(item: str) -> str:
        env.effect(f"add_item {item}")
        cart.append(item)
        return f"{len(cart)} item{'s' if len(cart) > 1 else ''}"

    return agent


@scenario
async def multi_turn_cart(env: Env) -> dict[str, Any]:
    agent = cart_agent(env)
    first = await agent.run("Add an apple")
    second = await agent.run("Add another apple", message_history=first.all_messages())
    return {"output": [first.output, second.output]}


@scenario
async def cart_from_stored_history(env: Env) -> dict[str, Any]:
    """Turn 2 from the history as an application stores it between turns (JSON), not as turn 1 left it."""
    agent = cart_agent(env)
    first = await agent.run("Add an apple")
    stored = ModelMessagesTypeAdapter.dump_json(first.all_messages())
    second = await agent.run("Add another apple", message_history=ModelMessagesTypeAdapter.validate_json(stored))
    return {"output": [first.output, second.output]}


def kind_of(output: Any) -> Any:
    if isinstance(output, DeferredToolRequests):
        return {
            "calls": [c.tool_call_id for c in output.calls],
            "approvals": [c.tool_call_id for c in output.approvals],
        }
    return output


def hitl_agent(env: Env) -> Agent[None, str | DeferredToolRequests]:
    """Prefect's and DBOS's human-in-the-loop agent: one tool deferred, one that asks for approval,
    and two with `requires_approval=True` (one approved, one denied)."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text("; ".join(f"{p.tool_name}: {p.content}" for p in sorted(done, key=lambda p: p.tool_name)))
        return ModelResponse(
            parts=[
                ToolCallPart("create_file", {"path": "test.txt"}, tool_call_id="h1"),
                ToolCallPart("delete_file", {"path": ".env"}, tool_call_id="h2"),
                ToolCallPart("wipe_disk", {}, tool_call_id="h3"),
                ToolCallPart("format_disk", {}, tool_call_id="h4"),
            ]
        )

    agent = Agent(
        model(env, "hitl", script), name="hitl", output_type=[str, DeferredToolRequests], capabilities=[env.durable()]
    )

    @agent.tool_plain
    def create_file(path: str) -> None:
        env.effect(f"create_file {path}")
        raise CallDeferred

    @agent.tool
    def delete_file(ctx: RunContext[None], path: str) -> bool:
        env.effect(f"delete_file {path} approved={ctx.tool_call_approved}")
        if not ctx.tool_call_approved:
            raise ApprovalRequired
        return True

    @agent.tool_plain(requires_approval=True)
    def wipe_disk() -> str:
        env.effect("wipe_disk")
        return "wiped"

    @agent.tool_plain(requires_approval=True)
    def format_disk() -> str:
        env.effect("format_disk")
        return "formatted"

    return agent


@scenario
async def approvals(env: Env) -> dict[str, Any]:
    """The loop of the peers' tests: ask, answer every request, run again; it ends after one round."""
    agent = hitl_agent(env)
    rounds, results, history = [], None, None
    for _ in range(3):
        result = await agent.run(
            "Delete the file `.env` and create `test.txt`", message_history=history, deferred_tool_results=results
        )
        rounds.append(kind_of(result.output))
        if not isinstance(result.output, DeferredToolRequests):
            break
        history = result.all_messages()
        results = DeferredToolResults(
            calls={c.tool_call_id: "Success" for c in result.output.calls},
            approvals={
                c.tool_call_id: (ToolDenied("not that") if c.tool_name == "format_disk" else True)
                for c in result.output.approvals
            },
        )
    return {"output": rounds}


# --- dynamic and MCP toolsets ------------------------------------------------------------------------------


def charge_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if done := returns(messages):
        return text(f"Done: {done[0].content}")
    return call("charge", {"amount": 10}, "d1")


@scenario
async def dynamic_toolset(env: Env) -> dict[str, Any]:
    def payments(ctx: RunContext[Deps]) -> FunctionToolset[Deps]:
        def charge(amount: int) -> str:
            env.effect(f"charge {amount} in {ctx.deps.country}")
            return f"charged {amount} EUR"

        return FunctionToolset([charge])

    agent = Agent(
        model(env, "dynamic", charge_script),
        name="dynamic",
        deps_type=Deps,
        toolsets=[DynamicToolset(payments, id="payments")],
        capabilities=[env.durable()],
    )
    result = await agent.run("Charge me", deps=Deps(country="Mexico"))
    return {"output": result.output}


def mcp_toolset(env: Env) -> Any:
    # Imported here: the other scenarios need no MCP client installed.
    from fastmcp.client.transports import StdioTransport
    from pydantic_ai.mcp import MCPToolset

    transport = StdioTransport(
        command=sys.executable,
        args=["-m", "tests.durable.mcp_server"],
        cwd=str(ROOT),
        env={**os.environ, LEDGER_VARIABLE: str(env.ledger)},
    )
    return MCPToolset(transport, id="mcp", init_timeout=20)


@scenario
async def mcp(env: Env) -> dict[str, Any]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = {p.tool_name: p.content for p in every_return(messages)}
        if not done:
            return ModelResponse(
                parts=[
                    ToolCallPart("get_product_name", {}, tool_call_id="m1"),
                    ToolCallPart("charge", {"amount": 10}, tool_call_id="m2"),
                ]
            )
        return text(f"{done['get_product_name']}: {done['charge']}")

    agent = Agent(model(env, "mcp", script), name="mcp", toolsets=[mcp_toolset(env)], capabilities=[env.durable()])
    result = await agent.run("Buy the product")
    return {"output": result.output}


# --- several agents in one session --------------------------------------------------------------------------


def lookup_only(env: Env, name: str, value: str) -> Agent[None, str]:
    """An agent with a tool named `lookup` whatever the agent: same model script, no instructions."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(f"got {done[0].content}")
        return call("lookup", {"q": "same"}, "a1")

    agent = Agent(model(env, name, script), name=name, capabilities=[env.durable()])

    @agent.tool_plain
    def lookup(q: str) -> str:
        env.effect(f"{name} lookup {q}")
        return value

    return agent


@scenario
async def two_agents(env: Env) -> dict[str, Any]:
    first = await lookup_only(env, "first", "from first").run("look it up")
    second = await lookup_only(env, "second", "from second").run("look it up")
    return {"output": [first.output, second.output]}


@scenario
async def gather_two_agents(env: Env) -> dict[str, Any]:
    first, second = await asyncio.gather(
        lookup_only(env, "left", "from left").run("look it up"),
        lookup_only(env, "right", "from right").run("look it up"),
    )
    return {"output": [first.output, second.output]}


@scenario
async def delegation(env: Env) -> dict[str, Any]:
    """An agent used as a tool of another agent, in the same session (Pydantic AI's delegation)."""
    child = lookup_only(env, "child", "from child")

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(f"the child said: {done[0].content}")
        return call("ask_child", {"question": "look it up"}, "parent-1")

    parent = Agent(model(env, "parent", script), name="parent", capabilities=[env.durable()])

    @parent.tool
    async def ask_child(ctx: RunContext[None], question: str) -> str:
        env.effect("ask_child")
        result = await child.run(question, usage=ctx.usage)
        return result.output

    result = await parent.run("ask the child")
    return {"output": result.output, "usage": usage_of(result)}


# --- what cannot be stored ------------------------------------------------------------------------------------


class Handle:
    """Not data: what a tool must not return to a durable run."""


@scenario
async def non_json_tool_result(env: Env) -> dict[str, Any]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if returns(messages):
            return text("opened")
        return call("open_handle", {}, "n1")

    agent = Agent(model(env, "handles", script), name="handles", capabilities=[env.durable()])

    @agent.tool_plain
    def open_handle() -> Any:
        env.effect("open_handle")
        return Handle()

    result = await agent.run("open it")
    return {"output": result.output}


# --- model settings, run_sync ---------------------------------------------------------------------------------


@scenario
async def model_settings_differ(env: Env) -> dict[str, Any]:
    """Temporal's and DBOS's custom model settings: they reach the model, and are part of the key."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return text(str(info.model_settings))

    agent = Agent(model(env, "settings", script), name="settings", capabilities=[env.durable()])
    low = await agent.run("Give me those settings", model_settings={"max_tokens": 123, "temperature": 0.1})
    high = await agent.run("Give me those settings", model_settings={"max_tokens": 456, "temperature": 0.1})
    return {"output": [low.output, high.output]}


@scenario
async def run_sync(env: Env) -> dict[str, Any]:
    """`agent.run_sync` from a thread with no event loop of its own, as a sync program calls it."""
    agent = whoami_agent(env)
    result = await asyncio.to_thread(agent.run_sync, "who am I?", deps=User(name="erin"))
    return {"output": result.output}


@scenario
async def same_run_twice(env: Env) -> dict[str, Any]:
    """The same run twice in a row, in one session: as in a DBOS or Temporal workflow that calls
    `agent.run` twice, each runs its tools (plain Pydantic AI: the cart has 2 items)."""
    cart: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if done := returns(messages):
            return text(f"The cart has {done[0].content}")
        return call("add_item", {"item": "apple"}, "again-1")

    agent = Agent(model(env, "again", script), name="again", capabilities=[env.durable()])

    @agent.tool_plain
    def add_item(item: str) -> str:
        env.effect(f"add_item {item}")
        cart.append(item)
        return f"{len(cart)} item{'s' if len(cart) > 1 else ''}"

    first = await agent.run("Add an apple")
    second = await agent.run("Add an apple")
    return {"output": [first.output, second.output]}
