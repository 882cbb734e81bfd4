"""One agent, one session: Pydantic AI's durable-engine scenarios for a single run, each run plainly,
durably, and replayed in another process with nothing asked or run again.

Ported from the scenarios of pydantic-ai's `tests/test_dbos.py`, `test_prefect.py` and
`test_temporal.py` (simple and complex runs, parallel and sequential tools, output modes, retries,
usage limits, `iter`, streams, the event stream handler, run ids).
"""

from __future__ import annotations

import pytest

from tests.durable.conftest import Conformance

MODEL_PART_EVENTS = frozenset({"part_start", "part_delta", "part_end", "final_result"})
"""Events a model response streams: a replayed model request streams nothing."""


async def test_a_simple_run_replays_its_answer(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("simple")
    assert plain.output == "The capital of Mexico is Mexico City."


async def test_a_complex_run_with_deps_toolsets_parallel_calls_and_structured_output(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("complex_run")
    assert plain.output == {
        "answers": [
            {"label": "Capital of the Country", "answer": "Mexico City"},
            {"label": "Weather in Mexico City", "answer": "sunny"},
            {"label": "Product Name", "answer": "Pydantic AI"},
        ]
    }
    assert sorted(plain.entries.effects) == ["get_country", "get_product_name", "get_weather Mexico City"]


async def test_a_complex_run_killed_before_its_last_answer_resumes_running_nothing_twice(
    conformance: Conformance,
) -> None:
    plain = await conformance.plain("complex_run")
    conformance.crash_and_resume("complex_run", at=3, plain=plain)


async def test_a_capability_given_to_the_run_instead_of_the_agent_journals_alike(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("capability_per_run")
    assert sorted(plain.entries.effects) == ["get_country", "get_product_name", "get_weather Mexico City"]


async def test_a_capability_given_to_the_run_resumes_alike(conformance: Conformance) -> None:
    plain = await conformance.plain("capability_per_run")
    conformance.crash_and_resume("capability_per_run", at=3, plain=plain)


async def test_sequential_tool_calls(conformance: Conformance) -> None:
    plain, durable, _ = await conformance.check("sequential_tools")
    # Sequential: in the order the model made the calls, in both runs.
    assert (
        durable.entries.effects
        == plain.entries.effects
        == ["get_country", "get_weather Mexico City", "get_product_name"]
    )


async def test_parallel_calls_identical_ones_included_each_run_once(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("parallel_tools")
    assert plain.output == "3 3 7"
    assert sorted(plain.entries.effects) == ["add 1 2", "add 1 2", "add 3 4"]


@pytest.mark.parametrize("mode", ["tool", "native", "prompted", "text_function", "text"])
async def test_every_output_mode(conformance: Conformance, mode: str) -> None:
    plain, _, _ = await conformance.check(f"output_{mode}")
    expected = {"text_function": "MEXICO CITY, MEXICO", "text": "Mexico City, Mexico"}
    assert plain.output == expected.get(mode, {"city": "Mexico City", "country": "Mexico"})


async def test_an_output_validator_raising_model_retry(conformance: Conformance) -> None:
    plain, _, replay = await conformance.check("output_validator_retry")
    assert plain.output == "Mexico City"
    assert len(plain.entries.models) == 2
    assert replay.result is not None and replay.result["usage"] == plain.result["usage"]  # type: ignore[index]


async def test_a_tool_raising_model_retry_runs_again_with_the_new_arguments_only(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("tool_model_retry")
    assert plain.output == "It is sunny"
    assert plain.entries.effects == ["get_weather_in_city CDMX", "get_weather_in_city Mexico City"]


async def test_a_tool_raising_tool_failed(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("tool_failed")
    assert plain.output == "Disk full (failed)"


async def test_a_usage_limit_stops_the_replay_where_it_stopped_the_run(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("usage_limit")
    assert plain.output.startswith("UsageLimitExceeded: The next request would exceed the request_limit of 3")
    assert len(plain.entries.models) == 3


async def test_usage_and_run_ids_after_a_replay(conformance: Conformance) -> None:
    plain, durable, replay = await conformance.check("usage_and_run_ids")
    assert replay.result is not None and durable.result is not None and plain.result is not None
    assert replay.result["usage"] == durable.result["usage"] == plain.result["usage"]
    # Pydantic AI's `get_default_run_id`: a replayed run keeps the id of the run that made it, and
    # so do its messages; two runs of the session have two ids.
    assert replay.result["run_ids"] == durable.result["run_ids"]
    assert replay.result["message_run_ids"] == durable.result["message_run_ids"]
    first, second = durable.result["run_ids"]
    assert first != second
    assert durable.result["message_run_ids"] == [[first] * 4, [second] * 4]


async def test_agent_iter(conformance: Conformance) -> None:
    plain, _, replay = await conformance.check("agent_iter")
    assert replay.result is not None and plain.result is not None
    assert replay.result["nodes"] == plain.result["nodes"]
    assert plain.output == "The capital is Mexico City."


async def test_run_stream(conformance: Conformance) -> None:
    plain, durable, replay = await conformance.check("run_stream")
    assert replay.result is not None and durable.result is not None and plain.result is not None
    # A streamed response is journaled whole: the durable run and its replay stream the same text
    # as the plain run, in one piece.
    assert plain.result["deltas"] == ["The capital ", "is ", "Mexico City."]
    assert replay.result["deltas"] == durable.result["deltas"] == ["The capital is Mexico City."]


async def test_run_stream_events(conformance: Conformance) -> None:
    plain, durable, replay = await conformance.check("run_stream_events")
    assert replay.result is not None and durable.result is not None and plain.result is not None
    # Pydantic AI's durable model hands the caller's stream the unit's response whole (one part, no
    # deltas), in the first run as in the replay; every other event is the plain run's.
    assert replay.result["events"] == durable.result["events"]
    assert "part_delta" in plain.result["events"] and "part_delta" not in durable.result["events"]
    assert [e for e in durable.result["events"] if e not in MODEL_PART_EVENTS] == [
        e for e in plain.result["events"] if e not in MODEL_PART_EVENTS
    ]
    assert durable.result["events"][-1] == "agent_run_result"


async def test_the_event_stream_handler(conformance: Conformance) -> None:
    plain, durable, replay = await conformance.check("event_stream_handler")
    assert replay.result is not None and durable.result is not None and plain.result is not None
    assert durable.result["events"] == plain.result["events"]
    assert "function_tool_result" in plain.result["events"]
    # As `NexumDurability` documents it: a replayed model request streams nothing to the
    # handler (its events were delivered live when it ran); the tool events arrive again.
    assert replay.result["events"] == [e for e in plain.result["events"] if e not in MODEL_PART_EVENTS]


async def test_model_settings_reach_the_model_and_tell_runs_apart(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("model_settings_differ")
    assert plain.output == ["{'max_tokens': 123, 'temperature': 0.1}", "{'max_tokens': 456, 'temperature': 0.1}"]


async def test_run_sync(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("run_sync")
    assert plain.output == "hello erin"
