"""The Judge against the project's own OpenAI-compatible server (`polyepo serve` on
SmolLM2): many groups in one call, the cache, the failure policies, the counters, the GIL
released while requests are in flight, and the API key kept out of every message."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import polyepo

RESPONSES = ["2+3=5", "Count up from 2: 3, 4, 5.", "banana banana"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_labels_many_groups_and_caches(server, copy_prompt, tmp_path):
    cache = tmp_path / "cache.jsonl"
    judge = polyepo.Judge(server, "smollm2", prompt=copy_prompt, cache=cache, max_tokens=96, max_concurrency=4)
    labels = judge.label(["What is 2+3?", "Add 2 and 3."], [RESPONSES, RESPONSES])
    assert [l.outcome for l in labels] == [polyepo.Outcome.LABELLED] * 2
    assert all(l.ok for l in labels)
    assert labels[0].clusters == [0, 1, None]
    stats = judge.stats()
    assert stats["calls"] == 2 and stats["labelled"] == 2 and stats["failures"] == {}
    # A new judge on the same cache file pays nothing for the same groups.
    again = polyepo.Judge(server, "smollm2", prompt=copy_prompt, cache=cache, max_tokens=96)
    assert [l.outcome for l in again.label(["What is 2+3?"], [RESPONSES])] == [polyepo.Outcome.CACHED]
    assert again.stats()["calls"] == 0
    # Labels feed set_advantages directly.
    clusters, outcomes = polyepo.flat_clusters(["What is 2+3?"] * 3, RESPONSES, [0, 0, 0], again)
    assert clusters == [0, 1, None] and outcomes == {"cached": 1}
    assert polyepo.failed_groups(outcomes) == 0


@pytest.mark.parametrize(
    "policy, clusters",
    [("skip", [None, None, None]), ("distinct", [0, 1, 2]), ("single", [0, 0, 0])],
)
def test_failure_policy_applies_and_is_counted(policy, clusters, monkeypatch, capfd):
    monkeypatch.setenv("POLYEPO_JUDGE_API_KEY", "sk-secret-do-not-print")
    judge = polyepo.Judge(
        f"http://127.0.0.1:{closed_port()}/v1", "m", failure_policy=policy, retries=1, backoff_s=0.0
    )
    [labels] = judge.label(["p"], [RESPONSES])
    assert labels.clusters == clusters
    assert labels.reason == "connection" and not labels.ok
    assert labels.outcome == (polyepo.Outcome.SKIPPED if policy == "skip" else polyepo.Outcome.FAILED)
    stats = judge.stats()
    assert stats["calls"] == 2 and stats["retries"] == 1 and stats["failures"] == {"connection": 1}
    out, err = capfd.readouterr()
    assert "sk-secret" not in out + err + repr(labels) + repr(stats)


def test_gil_is_released_while_waiting(server):
    # A judge that waits on a server which never answers (a listening socket that never
    # accepts): Python threads keep running meanwhile.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        judge = polyepo.Judge(f"http://127.0.0.1:{port}/v1", "m", timeout_s=1.5, retries=0)
        ticks = 0
        done = threading.Event()
        worker = threading.Thread(target=lambda: (judge.label(["p", "q"], [["a"], ["b"]]), done.set()))
        start = time.monotonic()
        worker.start()
        while not done.is_set() and time.monotonic() - start < 10:
            ticks += 1
            time.sleep(0.01)
        worker.join()
    assert done.is_set()
    assert ticks > 50, f"the main thread ran only {ticks} times during the judge call"
    assert judge.stats()["failures"] == {"timeout": 2}


def test_a_judge_that_keeps_failing_raises_naming_itself_and_logs_why(caplog):
    # A port nothing listens on: every group fails, every call.
    judge = polyepo.Judge(f"http://127.0.0.1:{closed_port()}/v1", "m", retries=0, max_failed_steps=2)
    with caplog.at_level("WARNING", logger="polyepo.judge"):
        polyepo.flat_clusters(["p"] * 3, RESPONSES, [0, 0, 0], judge)
    assert "failed on 1 of 1 groups" in caplog.text and "connection" in caplog.text
    with pytest.raises(polyepo.JudgeUnusableError, match=r"model `m` at http://127\.0\.0\.1:\d+/v1.*last failure: connection"):
        judge.label(["p"], [RESPONSES])
    # Off with max_failed_steps=0.
    lenient = polyepo.Judge(f"http://127.0.0.1:{closed_port()}/v1", "m", retries=0, max_failed_steps=0)
    for _ in range(4):
        [labels] = lenient.label(["p"], [RESPONSES])
    assert labels.outcome == polyepo.Outcome.SKIPPED and labels.reason == "connection" and labels.detail
    assert repr(labels) == 'GroupLabels(clusters=[None, None, None], outcome=Outcome.SKIPPED, reason="connection")'
    assert labels.outcome.name == "skipped" and repr(polyepo.Outcome.FAILED) == "Outcome.FAILED"


def test_bad_arguments():
    with pytest.raises(ValueError, match="endpoint"):
        polyepo.Judge("127.0.0.1:8000/v1", "m")
    with pytest.raises(ValueError, match="cache"):
        polyepo.Judge("http://x/v1", "m", cache="/nonexistent-dir/cache.jsonl")
    with pytest.raises(ValueError, match="response_format"):
        polyepo.Judge("http://x/v1", "m", response_format="yaml")
    with pytest.raises(ValueError, match="max_failure_rate"):
        polyepo.Judge("http://x/v1", "m", max_failure_rate=2.0)
    with pytest.raises(ValueError, match="failure_policy"):
        polyepo.Judge("http://x/v1", "m", failure_policy="retry")
    with pytest.raises(ValueError, match="max_concurrency"):
        polyepo.Judge("http://x/v1", "m", max_concurrency=0)
    with pytest.raises(ValueError, match="prompt"):
        polyepo.Judge("http://x/v1", "m", prompt="/no/such/file.txt")
    judge = polyepo.Judge("http://x/v1", "m")
    with pytest.raises(ValueError, match="one list of responses per problem"):
        judge.label(["a", "b"], [["r"]])
    with pytest.raises(ValueError, match=r"responses\[0\] is empty"):
        judge.label(["a"], [[]])
    with pytest.raises(TypeError, match="responses"):
        judge.label(["a"], "rr")
