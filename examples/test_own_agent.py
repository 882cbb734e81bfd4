"""Tests `own_agent.py` against a session it recorded: no server, no worker, no network, no API key.

Record the session once, with the server and the worker running (see `own_agent.py`), and keep the
file beside the tests:
    python own_agent.py a.txt b.txt
    nexum export own-agent -o own-agent.json

Run with:
    pytest test_own_agent.py
"""

from pathlib import Path

import pytest
from own_agent import build_agent, task

from nexum_pydantic_ai import NexumDurability, NotRecorded, RecordedModel, RecordedTools

RECORDING = Path(__file__).with_name("own-agent.json")


def test_the_agent_answers_as_it_did_when_recorded() -> None:
    agent = build_agent(NexumDurability(session_id=None))  # no session: nothing is journaled
    with agent.override(model=RecordedModel.from_export(RECORDING)):
        # The tools' recorded results too: read_text_file runs in a worker, and there is none here.
        result = agent.run_sync(task(["a.txt", "b.txt"]), capabilities=[RecordedTools.from_export(RECORDING)])
    assert result.output == "9 words in 2 files"


def test_a_question_never_recorded_fails_naming_it() -> None:
    agent = build_agent(NexumDurability(session_id=None))
    with (
        agent.override(model=RecordedModel.from_export(RECORDING)),
        pytest.raises(NotRecorded, match=r"model request 1 .* the user prompt 'Count the words in these files: c.txt'"),
    ):
        agent.run_sync(task(["c.txt"]))
