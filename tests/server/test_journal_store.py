"""The journal in the store contract, on SQLite and PostgreSQL: messages stored once, a list of
messages stored as additions to the previous one (so the journal grows linearly), collection of
messages nobody refers to, and copies of units into a new session.

The stored bytes are the store's own count (`stored_bytes`), compared with what storing the whole
history with every request would cost (`whole_history_bytes`).
"""

from __future__ import annotations

import pytest

from nexum_devtools.journal_sim import conversation, start_fields, whole_history_bytes
from nexum_server.errors import InvalidValue, SessionBusy
from nexum_server.journal import canonical, message_hash, resolve_all, split_input
from nexum_server.models import MessageBody, Status
from nexum_server.store import Store
from nexum_server.store.base import CopiedUnit
from tests.server import test_store
from tests.server.test_store import IR, LEASE, REF, T0, StoreFactory

# The store contract's fixture, one database per backend, made a fixture of this module too.
make_store = test_store.make_store

TURNS = (10, 50, 200)


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    store = make_store()
    store.register_workflow(REF, IR, T0)
    return store


def run_model(store: Store, session_id: str, turns: int, result_bytes: int = 4096, tag: str = "") -> list[str]:
    """A run of `turns` model requests, each completed with its response; their execution ids."""
    ids = []
    for turn, (sent, new, response) in enumerate(conversation(turns, result_bytes, tag)):
        hashes, messages = start_fields(sent, new)
        input, journal = split_input(
            {"unit": "model_request", "sent": hashes}, [MessageBody.model_validate(m) for m in messages]
        )
        execution = store.start_execution(REF, session_id, f"request-{turn}", input, T0, journal).execution
        task = store.claim("w", [REF], 1, LEASE, T0).tasks[0]
        store.complete(task.task_id, task.lease_token, response, T0)
        ids.append(execution.id)
    return ids


def whole_lists(store: Store, session_id: str) -> dict[str, list[str]]:
    return {i: hashes for i, (hashes, whole) in resolve_all(store.session_sent(session_id)).items() if whole}


def stored(store: Store) -> int:
    counts = store.stored_bytes()
    return counts["message_bytes"] + counts["execution_bytes"]


def test_the_journal_grows_linearly_with_the_conversation(store: Store) -> None:
    sizes = {}
    for turns in TURNS:  # runs that share no message: each one's bytes are what it added
        before = stored(store)
        run_model(store, f"run-{turns}", turns, tag=f"run-{turns}")
        sizes[turns] = stored(store) - before
    per_turn = {turns: size / turns for turns, size in sizes.items()}
    # Linear: a turn at 200 turns costs within 25 % of a turn at 10 turns. Storing the whole history
    # with every request would cost 20 times more per turn at 200 than at 10.
    assert per_turn[200] / per_turn[10] < 1.25, sizes
    assert sizes[200] / sizes[50] < 4.4, sizes
    assert whole_history_bytes(200) / sizes[200] > 50, (sizes, whole_history_bytes(200))


def test_a_request_list_is_stored_as_additions_and_read_back_whole(store: Store) -> None:
    ids = run_model(store, "s", 5, result_bytes=64)
    lists = whole_lists(store, "s")
    expected = [start_fields(sent, new)[0] for sent, new, _ in conversation(5, 64)]
    assert [lists[i] for i in ids] == expected
    rows = store.session_sent("s")
    assert [len(added) for _, _, added in rows] == [1, 2, 2, 2, 2]  # only what each request added
    assert [base for _, base, _ in rows] == [None, *ids[:-1]]
    # The input is stored without the list; a journal reads it back in recorded order.
    origin, units = store.journal("s")
    assert origin is None
    assert [(u.step, u.key, u.status) for u in units] == [(i + 1, f"request-{i}", Status.COMPLETED) for i in range(5)]
    assert units[0].input == {"unit": "model_request"}
    assert units[0].result["kind"] == "response"


def test_a_list_that_does_not_extend_the_previous_one_is_stored_whole(store: Store) -> None:
    a, b, c = ({"kind": "request", "parts": [{"content": x}]} for x in "abc")
    for key, sent in (("1", [a, b]), ("2", [a, c])):  # a history processor dropped b
        input, journal = split_input(
            {"sent": [message_hash(m) for m in sent]}, [MessageBody(hash=message_hash(m), body=m) for m in sent]
        )
        store.start_execution(REF, "s", key, input, T0, journal)
    rows = store.session_sent("s")
    assert rows[1][1] is None and rows[1][2] == [message_hash(a), message_hash(c)]


def test_a_request_that_names_the_list_it_extends_sends_only_what_it_adds(store: Store) -> None:
    a, b, c = ({"kind": "request", "parts": [{"content": x}]} for x in "abc")
    bodies = {id(m): MessageBody(hash=message_hash(m), body=m) for m in (a, b, c)}
    input, journal = split_input({"sent": [message_hash(a), message_hash(b)]}, [bodies[id(a)], bodies[id(b)]])
    first = store.start_execution(REF, "s", "1", input, T0, journal).execution
    # The same list the whole way and named by its base give the same stored list and digest.
    after = {"id": first.id, "count": 2}
    input, journal = split_input({"sent_after": after, "sent": [message_hash(c)]}, [bodies[id(c)]])
    assert input == {}
    second = store.start_execution(REF, "s", "2", input, T0, journal).execution
    input, journal = split_input({"sent": [message_hash(m) for m in (a, b, c)]}, [])
    third = store.start_execution(REF, "s", "3", input, T0, journal).execution
    lists = whole_lists(store, "s")
    assert lists[second.id] == lists[third.id] == [message_hash(m) for m in (a, b, c)]
    assert store.session_sent("s")[1][1:] == (first.id, [message_hash(c)])
    assert store.session_sent("s")[2][1:] == (second.id, [])  # the whole list, found to extend the second's
    # A base the session does not hold, or one of another length, is refused naming it; nothing is stored.
    for wrong in ({"id": first.id, "count": 3}, {"id": "nope", "count": 2}):
        input, journal = split_input({"sent_after": wrong, "sent": [message_hash(c)]}, [])
        with pytest.raises(InvalidValue, match="sent_after names execution"):
            store.start_execution(REF, "s", "4", input, T0, journal)
    with pytest.raises(InvalidValue, match="sent_after must be"):
        split_input({"sent_after": {"id": first.id}, "sent": []}, [])
    assert len(store.session_sent("s")) == 3


def test_the_same_messages_in_two_sessions_are_stored_once(store: Store) -> None:
    run_model(store, "one", 6)
    once = store.stored_bytes()
    run_model(store, "two", 6)
    twice = store.stored_bytes()
    assert twice["messages"] == once["messages"] == 11
    assert twice["message_bytes"] == once["message_bytes"]
    assert twice["refs"] == 2 * once["refs"]


def test_forget_and_retention_leave_no_orphan_messages(store: Store) -> None:
    shared = run_model(store, "one", 4)
    run_model(store, "two", 6)  # its first 4 requests send what "one" sent, and more
    store.forget_session("two", T0)
    assert store.stored_bytes()["messages"] == 7  # what "one" still refers to
    assert [len(h) for h in whole_lists(store, "one").values()] == [1, 3, 5, 7]
    assert store.messages([message_hash(conversation(1).__next__()[0][0])])
    deleted = store.delete_terminal_before(T0 + 1, 100)
    assert len(deleted) == len(shared)
    assert store.stored_bytes() == {"messages": 0, "message_bytes": 0, "execution_bytes": 0, "refs": 0}


def test_retention_keeps_a_request_a_later_unexpired_one_is_stored_against(store: Store) -> None:
    first = run_model(store, "s", 2, result_bytes=64)
    sent, new, _ = list(conversation(3, 64))[2]
    hashes, messages = start_fields(sent, new)
    input, journal = split_input({"sent": hashes}, [MessageBody.model_validate(m) for m in messages])
    store.start_execution(REF, "s", "live", input, T0 + 100, journal)  # not terminal: never retained
    assert store.delete_terminal_before(T0 + 1, 100) == []
    assert len(whole_lists(store, "s")) == 3 and first


def test_a_hash_that_is_not_its_body_or_was_never_sent_is_refused(store: Store) -> None:
    body = {"kind": "request", "parts": []}
    with pytest.raises(InvalidValue, match="canonical JSON"):
        split_input({"sent": ["0" * 64]}, [MessageBody(hash="0" * 64, body=body)])
    with pytest.raises(InvalidValue, match="list of sha256"):
        split_input({"sent": ["nope"]}, None)
    input, journal = split_input({"sent": [message_hash(body)]}, None)
    with pytest.raises(InvalidValue, match="does not have"):
        store.start_execution(REF, "s", "k", input, T0, journal)
    assert store.list_executions("s", None, None, 10) == []
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_copied_units_keep_their_order_results_lists_and_origin(store: Store) -> None:
    run_model(store, "src", 4, result_bytes=64)
    lists = whole_lists(store, "src")
    _, units = store.journal("src")
    copies = [CopiedUnit(u.workflow_id, u.version_hash, u.key, u.input, u.result, lists[u.id]) for u in units[:3]]
    assert store.copy_units("new", copies, [], [], ("src", 3), T0) == 3
    origin, copied = store.journal("new")
    assert origin == ("src", 3)
    assert [(u.key, u.status, u.result) for u in copied] == [(u.key, u.status, u.result) for u in units[:3]]
    assert list(whole_lists(store, "new").values()) == [lists[u.id] for u in units[:3]]
    run = store.take_session("new", "me", LEASE, T0)
    assert (run.forked_from, run.fork_until) == ("src", 3)
    store.end_session_run("new", run.token)
    with pytest.raises(SessionBusy):
        store.copy_units("new", copies, [], [], None, T0)
    # Forgetting the source leaves the copy whole: it refers to the messages itself.
    store.forget_session("src", T0)
    assert list(whole_lists(store, "new").values()) == [lists[u.id] for u in units[:3]]
    assert store.messages(sorted({h for c in copies for h in c.sent or ()})).keys() == {
        h for c in copies for h in c.sent or ()
    }
    store.forget_session("new", T0)
    assert store.session_origin("new") is None
    assert store.stored_bytes()["messages"] == 0


def test_an_import_brings_its_workflows_and_messages(make_store: StoreFactory) -> None:
    store = make_store()
    body = {"kind": "request", "parts": [{"content": "hi"}]}
    unit = CopiedUnit("agent", "sha256:x", "k", {"unit": "model_request"}, {"kind": "response"}, [message_hash(body)])
    store.copy_units(
        "imported",
        [unit],
        [(message_hash(body), canonical(body))],
        [("agent", "sha256:x", {"nodes": [{"id": "n"}]})],
        None,
        T0,
    )
    assert store.messages([message_hash(body)]) == {message_hash(body): body}
    assert [u.key for u in store.journal("imported")[1]] == ["k"]
