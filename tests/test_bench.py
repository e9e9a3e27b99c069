"""The benchmark harness: its report arithmetic, and one short real run of every workload."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = load_script("run")
compare = load_script("compare")


def wrk_line(requests: int, p50_us: int, p99_us: int, status_errors: int = 0) -> str:
    return (
        f'BENCH_RESULT {{"requests": {requests}, "duration_us": 2000000, "bytes": 1, '
        f'"errors": {{"connect": 0, "read": 0, "write": 0, "status": {status_errors}, '
        f'"timeout": 0}}, "latency_us": {{"min": 1, "mean": 2.0, "max": 9, "p50": {p50_us}, '
        f'"p90": {p50_us * 2}, "p99": {p99_us}, "p999": {p99_us}}}}}'
    )


def test_wrk_output_is_parsed_from_the_done_hook_line() -> None:
    output = "Running 2s test @ http://x\n" + wrk_line(7000, 9000, 20000) + "\n"
    result = bench.parse_wrk_output(output)
    assert result["requests"] == 7000
    assert result["latency_us"]["p99"] == 20000
    with pytest.raises(RuntimeError, match="no BENCH_RESULT"):
        bench.parse_wrk_output("wrk crashed")


def test_row_reports_medians_cpu_per_request_and_targets() -> None:
    row = bench.Row("get", 64)
    for requests, cpu in ((7000, 1.4), (8000, 1.6), (9000, 2.7)):
        wrk = bench.parse_wrk_output(wrk_line(requests, 5000, 12000))
        row.runs.append(bench.Run(wrk, server_cpu_s=cpu, db_cpu_s=0.0))
    row.rss_mb = [80.0]
    summary = row.summary()
    assert summary["rps"] == 4000.0  # the median run: 8000 requests in 2 s
    assert summary["server_cpu_ms_per_request"] == 0.2  # 1.6 s of CPU for 8000 requests
    assert summary["p99_over_p50"] == 2.4
    assert summary["valid"]
    assert summary["checks"] == {
        "no_errors": True,
        "no_stalls": True,
        "rss": True,
        "rps": True,
        "p99": True,
    }
    assert "get" in bench.format_table([summary])


def test_any_error_makes_a_row_invalid_and_stalls_and_memory_fail_their_checks() -> None:
    row = bench.Row("list", 16)
    row.runs.append(bench.Run(bench.parse_wrk_output(wrk_line(100, 1000, 9000, 1)), 0.1, 0.0))
    row.rss_mb = [120.0]
    summary = row.summary()
    assert not summary["valid"]
    assert summary["checks"] == {"no_errors": False, "no_stalls": False, "rss": False}


def test_lua_data_file_lists_tokens_and_ids_per_user(tmp_path: Path) -> None:
    path = tmp_path / "data.lua"
    bench.write_lua_data(path, "mixed", ["a.b.c", "d.e.f"], [[1, 2], [3]])
    text = path.read_text()
    assert 'workload = "mixed"' in text
    assert '"a.b.c"' in text
    assert "{1, 2}" in text
    assert "{3}" in text


def burst(workload: str, side: str, number: int, cpu: float, errors: int = 0) -> dict[str, Any]:
    return {
        "round": number,
        "side": side,
        "workload": workload,
        "server_cpu_ms_per_request": cpu,
        "db_cpu_ms_per_request": cpu / 2,
        "rps": 1000.0,
        "p50_ms": 10.0,
        "p99_ms": 20.0 + number,
        "errors": errors,
    }


def test_comparison_change_is_the_median_of_the_ratios_of_each_round() -> None:
    """The machine slows down in round 1 for both sides alike: the per-round ratios see
    through it, where the ratio of the two sides' medians would not."""
    cpu = {"before": [0.20, 0.40, 0.25], "after": [0.22, 0.40, 0.30]}
    bursts = [
        burst("get", side, number, value)
        for side, values in cpu.items()
        for number, value in enumerate(values)
    ]
    bursts.append(burst("list", "before", 0, 0.5, errors=3))  # a side with errors, no pair
    get = compare.summarize("get", bursts)
    assert get["before_server_cpu_ms_per_request"] == 0.25
    assert get["after_server_cpu_ms_per_request"] == 0.3  # +20 % between the medians
    assert get["change_percent"] == 10.0  # the ratios 1.1, 1.0, 1.2: their median
    assert (get["ratio_min"], get["ratio_max"]) == (1.0, 1.2)
    assert get["rounds"] == 3
    assert get["before_p99_ms"] == 21.0
    listing = compare.summarize("list", bursts)
    assert (listing["before_errors"], listing["after_errors"]) == (3, 0)
    assert listing["change_percent"] is None
    assert listing["after_server_cpu_ms_per_request"] is None
    table = compare.format_comparison([get, listing])
    assert "+10.0 %" in table
    assert "1.00..1.20" in table
    assert "3/0" in table
    assert "n/a*" in table  # a side with errors is flagged
    # ABBA: the side that goes first alternates round by round.
    assert [compare.side_order(n)[0] for n in range(4)] == ["before", "after"] * 2
    assert compare.parse_args(["--against", str(ROOT)]).workloads == [
        "list",
        "get",
        "create",
        "toggle",
    ]


def run_script(
    tmp_path: Path, script: str, *options: str, timeout: float = 120
) -> tuple[dict[str, Any], str]:
    """bench/<script>.py against TEST_DATABASE_URL, on free ports: its JSON and output."""
    output = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / f"{script}.py"),
            *("--server", os.environ["TEST_DATABASE_URL"]),
            *("--label", f"smoke-{free_port()}", "--port", str(free_port())),
            *("--output", str(output), *options),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(output.read_text()), completed.stdout


def run_bench(tmp_path: Path, *options: str) -> tuple[dict[str, Any], str]:
    """bench/run.py for one second per workload: its JSON and output."""
    short = ("--duration", "1", "--warmup", "0", "--runs", "1", "--connections", "4")
    return run_script(tmp_path, "run", *short, *options)


@pytest.mark.postgres
def test_benchmark_runs_every_workload_against_a_real_server(tmp_path: Path) -> None:
    """One second per workload: the harness, wrk, the Lua script and the report work together."""
    result, stdout = run_bench(tmp_path, "--no-big-user")
    rows = {row["workload"]: row for row in result["rows"]}
    assert set(rows) == set(bench.WORKLOADS)
    for row in rows.values():
        assert row["valid"], row
        assert row["runs"][0]["requests"] > 0
        assert row["server_cpu_ms_per_request"] > 0
    assert all(mb > 0 for mb in result["peak_rss_mb_per_worker"])
    assert "pinned to CPU" in stdout
    # Rate limits are off unless asked for: wrk is not a person.
    assert "RATE_LIMIT=0" in stdout
    assert result["setup"]["rate_limit"] == "0"


@pytest.mark.postgres
def test_benchmark_runs_the_mcp_tool_calls_when_asked(tmp_path: Path) -> None:
    result, _ = run_bench(tmp_path, "--no-big-user", "--workloads", ",".join(bench.MCP_WORKLOADS))
    rows = {row["workload"]: row for row in result["rows"]}
    assert set(rows) == set(bench.MCP_WORKLOADS)
    for row in rows.values():
        assert row["valid"], row  # every POST /mcp answered 200
        assert row["runs"][0]["requests"] > 0


@pytest.mark.postgres
@pytest.mark.parametrize("reference", ["fastapi", "starlette"])
def test_reference_apps_serve_the_get_workload(tmp_path: Path, reference: str) -> None:
    result, _ = run_bench(tmp_path, "--reference", reference, "--workloads", "get")
    (row,) = result["rows"]
    assert row["valid"], row  # every request answered 200 with a seeded task
    assert row["runs"][0]["requests"] > 0
    assert f"reference:create_{reference}" in result["setup"]["server"]


def test_reference_apps_serve_only_get_from_one_process() -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--reference", "fastapi"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--reference", "starlette", "--workloads", "get", "--workers", "2"])
    args = bench.parse_args(["--reference", "fastapi", "--workloads", "get"])
    assert args.no_big_user
    assert args.label == "reference-fastapi"


@pytest.mark.postgres
def test_list_plans_use_their_indexes() -> None:
    """bench/explain.py on a seeded database: the search, filter and sort of the 10,000-task
    user each find their rows through an index (the generic plans, which the service's prepared
    statements run), and the tag filter never looks up each tagged task."""
    completed = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "explain.py")),
            *("--server", os.environ["TEST_DATABASE_URL"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    plans = dict(re.findall(r"### (\w+): [^\n]*\n\n```\n(.*?)```", completed.stdout, re.S))
    assert "Bitmap Index Scan on ix_tasks_search_text_trgm" in plans["search"]
    assert "Index Only Scan using ix_task_tags_user_id_tag_task_id_carried" in plans["filter"]
    # Only the page's tasks are read: 100 lookups, not one per task tagged "work".
    assert re.search(r"Index Scan using tasks_pkey on tasks .*loops=100\)", plans["filter"])
    assert "Index Scan Backward using ix_tasks_user_id_priority_id" in plans["sort"]


instructions = load_script("instructions")


def test_instruction_counts_are_read_from_callgrind_dumps_and_compared() -> None:
    dump = "# callgrind format\nevents: Ir\nsummary: 0\n\nfn=(1) main\n5 12\ntotals: 3000000\n"
    assert instructions.read_total(dump) == 3_000_000
    assert instructions.read_total("events: Ir\nfn=(1) main\n") is None  # still being written

    def count(side: str, phase: str, requests: int, total: int, idle: int = 0) -> Any:
        return instructions.Count(side, "get", phase, requests - 10, 10, 0, total, 20.0, idle, 10.0)

    sides = [count("before", "-", 1000, 1_500_000_000)]  # 990 answered in time, 10 after
    # 20 M in 10 s idle: 40 M of the 20 s burst were background, not requests.
    sides.append(count("after", "-", 1200, 1_660_000_000, idle=20_000_000))
    assert sides[1].background_per_second == 2_000_000
    table = instructions.format_counts(sides)
    assert "1.500" in table  # millions per request
    assert "1.350" in table
    assert "-10.0 %" in table  # after against before
    streams = [count("after", "closed", 100, 100_000_000), count("after", "open", 100, 105_000_000)]
    assert "+5.0 %" in instructions.format_counts(streams)  # open against closed, same side
    with pytest.raises(SystemExit):
        instructions.parse_args(["--idle-streams", "-1"])


@pytest.mark.postgres
def test_instructions_are_counted_for_a_real_server_with_idle_streams(tmp_path: Path) -> None:
    """The service under callgrind, three idle streams opened and closed between bursts."""
    result, _ = run_script(
        tmp_path,
        "instructions",
        *("--workloads", "get", "--duration", "2", "--warmup", "1", "--idle-seconds", "2"),
        *("--connections", "4", "--idle-streams", "3"),
        timeout=900,
    )
    counts = result["counts"]
    assert [count["phase"] for count in counts] == ["closed", "open", "closed after"]
    for count in counts:
        assert count["errors"] == 0
        assert count["requests"] > 0
        # A get is some hundreds of thousands of instructions to a few million, never none.
        assert 100_000 < count["per_request"] < 50_000_000, count
