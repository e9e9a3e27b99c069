"""The benchmark's sync pieces: the keyed write workloads' checks, the cost comparison with a
baseline, and the stream clients against a real server; nothing here is timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SECRET, new_user, token_for
from tests.server import running_server, service_environment
from tests.test_bench import bench, run_bench, wrk_line

# Importable once bench/run.py is loaded (it puts bench/ on the path).
from harness import streams, sync_workloads  # isort: skip
from harness.options import parse_cpus  # isort: skip


def summary_of(workload: str, requests: int, cpu_s: float = 0.2) -> dict[str, object]:
    row = bench.Row(workload, 64)
    row.runs.append(bench.Run(bench.parse_wrk_output(wrk_line(requests, 5000, 9000)), cpu_s, 0.0))
    row.rss_mb = [80.0]
    summary: dict[str, object] = row.summary()
    return summary


def test_the_sync_workloads_and_stream_options_are_offered() -> None:
    args = bench.parse_args(
        ["--workloads", "update,create-idem,toggle-idem", "--streams", "--fanout-streams", "150"]
    )
    assert args.workloads == ["update", "create-idem", "toggle-idem"]
    assert (args.idle_streams, args.fanout_writes) == (1000, 100)
    # The fan-out's streams of one user need a cap above the default's 10.
    assert streams.server_environment(args) == {"STREAMS_PER_USER": "150"}
    assert streams.open_files_needed(args) > 1000
    assert streams.server_environment(bench.parse_args([])) == {}
    assert parse_cpus("1") == {1}
    assert parse_cpus("0,2-3") == {0, 2, 3}


def test_a_keyed_workload_fails_its_check_when_a_request_stored_no_response(
    tmp_path: Path,
) -> None:
    first = sync_workloads.with_first_request_check(summary_of("create-idem", 4000), [4003])
    assert first["checks"]["first_requests"]
    assert first["idempotency_keys_stored"] == [4003]
    # Fewer stored responses than answered requests: some keys were replayed.
    replayed = sync_workloads.with_first_request_check(summary_of("toggle-idem", 4000), [3999])
    assert not replayed["checks"]["first_requests"]
    assert "NOT met: first_requests" in bench.format_table([replayed])
    # Each thread's keys start with random bytes of its own, so no two wrk runs share keys.
    lua = (Path(bench.__file__).parent / "workload.lua").read_text()
    assert '"/dev/urandom"' in lua
    assert 'builders["create-idem"]' in lua
    assert 'builders["toggle-idem"]' in lua
    path = tmp_path / "data.lua"
    bench.write_lua_data(path, "toggle-idem", ["a.b.c"], [[1, 2]])
    assert 'workload = "toggle-idem"' in path.read_text()


def test_each_write_is_compared_with_the_plain_write_of_the_baseline() -> None:
    baseline = {
        "rows": [
            {"workload": "create", "connections": 64, "server_cpu_ms_per_request": 0.2},
            {"workload": "update", "connections": 64, "server_cpu_ms_per_request": 0.25},
            {"workload": "toggle", "connections": 16, "server_cpu_ms_per_request": 0.2},
        ]
    }
    rows = [
        {"workload": "create", "connections": 64, "server_cpu_ms_per_request": 0.22},
        {"workload": "create-idem", "connections": 64, "server_cpu_ms_per_request": 0.3},
        {"workload": "update", "connections": 64, "server_cpu_ms_per_request": 0.25},
        # No baseline at 64 connections for toggle; get is no write.
        {"workload": "toggle-idem", "connections": 64, "server_cpu_ms_per_request": 0.25},
        {"workload": "get", "connections": 64, "server_cpu_ms_per_request": 0.1},
    ]
    costs = sync_workloads.cost_against_baseline(rows, baseline)
    by_workload = {cost["workload"]: cost for cost in costs}
    assert set(by_workload) == {"create", "create-idem", "update"}
    assert by_workload["create"]["ratio"] == 1.1
    assert by_workload["create"]["met"]  # +10 % of at most +15 %
    assert by_workload["create-idem"]["baseline_workload"] == "create"
    assert by_workload["create-idem"]["ratio"] == 1.5
    assert not by_workload["create-idem"]["met"]  # +50 % of at most +40 %
    assert by_workload["update"]["met"]
    text = sync_workloads.format_costs(costs, "before.json")
    assert "create-idem" in text
    assert "+50.0 % (NOT met, target <= +40 %)" in text


def test_idle_and_fanout_summaries_hold_their_targets() -> None:
    closed = [
        [summary_of("get", 2100), summary_of("toggle", 2000)],
        [summary_of("get", 1900), summary_of("toggle", 2000)],
        [summary_of("get", 1900), summary_of("toggle", 2000)],
        [summary_of("get", 2100), summary_of("toggle", 2000)],
    ]
    opened = [
        [summary_of("get", 1900), summary_of("toggle", 1600)],
        [summary_of("get", 1000), summary_of("toggle", 1600)],
        [summary_of("get", 1900), summary_of("toggle", 2000)],
    ]
    idle = streams.idle_summary(
        streams=1000,
        ended=0,
        rss_mb={"before": 80.0, "open": 130.0, "open_after_load": 150.0},
        idle_cpu_percent=1.0,
        closed=closed,
        opened=opened,
    )
    assert idle["rss_added_mb"] == 70.0
    assert idle["rss_met"]
    assert idle["rounds"] == 3
    get, toggle = idle["compared"]
    # Each open run against the mean of the closed runs on either side (the machine drifts),
    # and the median of the rounds: one disturbed round (the second) does not decide it.
    assert get["rps_closed"] == 1000.0  # (2100 + 1900 + 1900 + 2100) requests / 4 / 2 s
    assert get["slowdowns"] == [0.053, 0.9, 0.053]
    assert get["slowdown"] == 0.053
    assert get["met"]
    assert toggle["slowdowns"] == [0.25, 0.25, 0.0]
    assert toggle["slowdown"] == 0.25
    assert not toggle["met"]
    assert idle["valid"]
    with pytest.raises(ValueError, match="closed round on either side"):
        streams.idle_summary(
            streams=1000,
            ended=0,
            rss_mb={"before": 80.0, "open": 130.0, "open_after_load": 150.0},
            idle_cpu_percent=1.0,
            closed=closed[:2],
            opened=opened,
        )

    fast = streams.FanOut(streams=100, writes=1, latencies_s=[0.01] * 99 + [2.0])
    assert fast.summary()["p99_ms"] == 10.0  # nearest rank: the 99th of 100
    assert fast.summary()["met"]
    slow = streams.FanOut(streams=100, writes=1, latencies_s=[0.01] * 98 + [2.0, 2.0])
    assert slow.summary()["p99_ms"] == 2000.0
    assert not slow.summary()["met"]
    missed = streams.FanOut(streams=2, writes=1, latencies_s=[0.01], missed=1)
    assert not missed.summary()["met"]
    assert not streams.streams_valid({"idle": idle, "fanout": missed.summary()})
    text = streams.format_streams({"idle": idle, "fanout": fast.summary()})
    assert "+70.0 MB (met" in text
    assert "+25.0 % slower, median of 3 rounds (+25.0, +25.0, +0.0) (NOT met" in text


def test_stream_clients_hold_streams_open_and_time_a_fanout(
    database_url: str, tmp_path: Path
) -> None:
    env = service_environment(
        DATABASE_URL=database_url, BETTER_AUTH_SECRET=SECRET, WORKERS="1", STREAMS_PER_USER="4"
    )
    with running_server(tmp_path, env) as server:
        idle_tokens = [token_for(new_user()) for _ in range(12)]
        with streams.open_streams(server.url, idle_tokens) as (thread, client):
            assert len(client.streams) == 12
            assert streams.current_rss_mb(server.process.pid) > 0
            fanout = thread.run(
                streams.measure_fanout(server.url, token_for(new_user()), streams=4, writes=3)
            )
            assert client.ended() == 0  # the server ended none of them
            # Beyond the server's cap a stream is refused, and the harness says so.
            crowded = token_for(new_user())
            with pytest.raises(RuntimeError, match="429"):
                thread.run(client.open([crowded] * 5))
    summary = fanout.summary()
    assert (summary["events"], summary["missed"]) == (12, 0)
    assert all(latency >= 0 for latency in fanout.latencies_s)


@pytest.mark.postgres
def test_sync_workloads_and_stream_measurements_run_against_a_real_server(
    tmp_path: Path,
) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps(
            {
                "rows": [
                    {"workload": name, "connections": 4, "server_cpu_ms_per_request": 100.0}
                    for name in ("create", "toggle", "update")
                ]
            }
        )
    )
    result, stdout = run_bench(
        tmp_path,
        *("--workloads", "update,create-idem,toggle-idem", "--no-big-user", "--streams"),
        *(
            "--idle-streams",
            "30",
            "--stream-rounds",
            "2",
            "--fanout-streams",
            "5",
            "--fanout-writes",
            "3",
        ),
        *("--baseline", str(baseline)),
    )
    rows = {row["workload"]: row for row in result["rows"]}
    assert set(rows) == {"update", "create-idem", "toggle-idem"}
    for name in ("create-idem", "toggle-idem"):
        assert rows[name]["valid"], rows[name]
        assert rows[name]["checks"]["first_requests"], rows[name]
        assert rows[name]["idempotency_keys_stored"][0] >= rows[name]["runs"][0]["requests"] > 0
    assert rows["update"]["valid"]
    idle, fanout = result["streams"]["idle"], result["streams"]["fanout"]
    assert idle["valid"]
    assert (idle["streams"], idle["rounds"]) == (30, 2)
    assert [row["workload"] for row in idle["compared"]] == list(streams.COMPARED_WORKLOADS)
    assert idle["rss_mb"]["before"] > 0
    assert (fanout["events"], fanout["missed"]) == (15, 0)
    assert {cost["workload"] for cost in result["cost_vs_baseline"]} == set(rows)
    assert "Idle streams: 30 open" in stdout
    assert "Fan-out: 3 writes to 5 streams" in stdout
