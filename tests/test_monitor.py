"""MemoryMonitor: the real limit from real (fake-tree) cgroup files, status, leak trend."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterable
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_agentmem.watch import monitor as monitor_mod
from jupyter_agentmem.watch.monitor import MemoryLimit, MemoryMonitor, parse_size, read_memory_limit

GiB = 2**30
MiB = 2**20
RAM = 64 * GiB  # injected physical RAM so results do not depend on this machine
LOGGER = "jupyter_agentmem.watch.monitor"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def roots(tmp_path: Path, self_cgroup: str | None) -> tuple[str, str]:
    """A fake ``/proc`` (with ``self/cgroup`` unless None) and an empty fake cgroup mount."""
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    cg.mkdir()
    if self_cgroup is not None:
        write(proc / "self" / "cgroup", self_cgroup)
    return str(proc), str(cg)


def limit(tmp_path: Path, env: dict[str, str] | None = None) -> MemoryLimit:
    return read_memory_limit(
        env or {}, str(tmp_path / "cgroup"), str(tmp_path / "proc"), total_memory=RAM
    )


# --- parse_size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1073741824", GiB),
        (" 2G ", 2 * GiB),
        ("2g", 2 * GiB),
        ("512M", 512 * MiB),
        ("512Mi", 512 * MiB),
        ("300MB", 300 * 10**6),
        ("1.5GiB", 3 * GiB // 2),
        ("1.5 GiB", 3 * GiB // 2),
        ("4k", 4096),
        ("1kb", 1000),
        ("10B", 10),
        ("1T", 2**40),
        (".5K", 512),
        ("9223372036854771712", 9223372036854771712),  # exact: no float rounding
    ],
)
def test_parse_size_accepts_common_forms(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "abc", "-1G", "1.2.3", "12 apples", "1e9", "G", "nan"])
def test_parse_size_rejects_garbage_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"memory size.*e\.g\. .*2G.*300MB"):
        parse_size(text)


@given(st.integers(min_value=0, max_value=2**70), st.sampled_from(["", "K", "MiB", "GB", "t"]))
def test_parse_size_round_trips_integers(n: int, unit: str) -> None:
    factor = {"": 1, "K": 1024, "MiB": 2**20, "GB": 10**9, "t": 2**40}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


# --- read_memory_limit: cgroup v2 ------------------------------------------------------------


def test_v2_nested_takes_smallest_limit_of_self_and_ancestors(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "0::/user.slice/jupyter/kernel-1\n")
    base = Path(cg)
    write(base / "memory.max", "max\n")
    parent = write(base / "user.slice" / "memory.max", f"{4 * GiB}\n")
    write(base / "user.slice" / "jupyter" / "memory.max", "max\n")
    write(base / "user.slice" / "jupyter" / "kernel-1" / "memory.max", f"{8 * GiB}\n")
    assert limit(tmp_path) == MemoryLimit(4 * GiB, "cgroup", str(parent))


def test_v2_own_limit_wins_when_smaller(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "0::/a/b\n")
    write(Path(cg) / "a" / "memory.max", f"{4 * GiB}")
    own = write(Path(cg) / "a" / "b" / "memory.max", f"{GiB}")
    assert limit(tmp_path) == MemoryLimit(GiB, "cgroup", str(own))


def test_v2_max_everywhere_means_system(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "0::/a\n")
    write(Path(cg) / "memory.max", "max\n")
    write(Path(cg) / "a" / "memory.max", "max\n")
    assert limit(tmp_path) == MemoryLimit(RAM, "system", "psutil.virtual_memory().total")


@pytest.mark.parametrize("line", ["0::/\n", "0::/../../outside\n"])
def test_v2_namespaced_container_reads_the_mount_root(tmp_path: Path, line: str) -> None:
    # Inside a cgroup namespace the process sees "0::/" and its limit at the mount root;
    # a path outside the namespace ("/../..") must not escape the mount.
    _, cg = roots(tmp_path, line)
    write(Path(cg).parent / "memory.max", "1")  # outside the mount: must never be read
    write(Path(cg) / "memory.max", f"{2 * GiB}\n")
    assert limit(tmp_path).bytes == 2 * GiB


def test_v2_limit_above_ram_is_unlimited(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "0::/a\n")
    write(Path(cg) / "a" / "memory.max", str(RAM + 1))
    assert limit(tmp_path).source == "system"


# --- read_memory_limit: cgroup v1 ------------------------------------------------------------


def test_v1_combined_controllers(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "5:pids:/x\n4:cpuacct,cpu,memory:/docker/abc\n0::/\n")
    f = write(Path(cg) / "memory" / "docker" / "abc" / "memory.limit_in_bytes", f"{3 * GiB}\n")
    assert limit(tmp_path) == MemoryLimit(3 * GiB, "cgroup", str(f))


def test_v1_falls_back_to_the_mount_root(tmp_path: Path) -> None:
    # Docker without a cgroup namespace lists the host path, which is absent in the container.
    _, cg = roots(tmp_path, "4:memory:/docker/abc\n")
    f = write(Path(cg) / "memory" / "memory.limit_in_bytes", f"{GiB}\n")
    assert limit(tmp_path) == MemoryLimit(GiB, "cgroup", str(f))


def test_v1_huge_value_means_unlimited(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "4:memory:/k\n")
    write(Path(cg) / "memory" / "k" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(Path(cg) / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert limit(tmp_path).source == "system"
    # ... also with a RAM bigger than 2**60 injected: the sentinel alone decides.
    assert read_memory_limit({}, cg, str(tmp_path / "proc"), total_memory=2**63).bytes == 2**63


def test_v1_value_above_ram_means_unlimited(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "4:memory:/k\n")
    write(Path(cg) / "memory" / "k" / "memory.limit_in_bytes", str(2 * RAM))
    assert limit(tmp_path).source == "system"


def test_hybrid_v1_and_v2_takes_the_smaller(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "4:memory:/k\n0::/k\n")
    write(Path(cg) / "k" / "memory.max", f"{2 * GiB}")
    write(Path(cg) / "memory" / "k" / "memory.limit_in_bytes", f"{GiB}")
    assert limit(tmp_path).bytes == GiB


# --- read_memory_limit: unreadable sources and MEM_LIMIT -------------------------------------


@pytest.mark.parametrize("bad", ["garbage\n", "", "-1\n", "0\n", "12.5\n"])
def test_garbage_limit_file_falls_through_to_parent(tmp_path: Path, bad: str) -> None:
    _, cg = roots(tmp_path, "0::/a\n")
    write(Path(cg) / "a" / "memory.max", bad)
    root = write(Path(cg) / "memory.max", f"{GiB}")
    assert limit(tmp_path) == MemoryLimit(GiB, "cgroup", str(root))


def test_unreadable_limit_file_falls_through_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, cg = roots(tmp_path, "0::/a\n")
    (Path(cg) / "a" / "memory.max").mkdir(parents=True)  # reading it raises IsADirectoryError
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert limit(tmp_path, {"MEM_LIMIT": "1G"}).source == "MEM_LIMIT"
    assert caplog.records == []


def test_missing_or_garbled_proc_file_means_no_cgroup(tmp_path: Path) -> None:
    roots(tmp_path, None)
    assert limit(tmp_path).source == "system"
    write(tmp_path / "proc" / "self" / "cgroup", "nonsense\n\n::\n")
    assert limit(tmp_path).source == "system"


def test_mem_limit_used_without_cgroup(tmp_path: Path) -> None:
    roots(tmp_path, None)
    assert limit(tmp_path, {"MEM_LIMIT": "2147483648"}) == MemoryLimit(
        2 * GiB, "MEM_LIMIT", "MEM_LIMIT=2147483648"
    )
    assert limit(tmp_path, {"MEM_LIMIT": "1.5GiB"}).bytes == 3 * GiB // 2


def test_smaller_of_cgroup_and_mem_limit_wins(tmp_path: Path) -> None:
    _, cg = roots(tmp_path, "0::/\n")
    write(Path(cg) / "memory.max", f"{4 * GiB}")
    assert limit(tmp_path, {"MEM_LIMIT": "1G"}) == MemoryLimit(GiB, "MEM_LIMIT", "MEM_LIMIT=1G")
    assert limit(tmp_path, {"MEM_LIMIT": "8G"}).source == "cgroup"
    assert limit(tmp_path, {"MEM_LIMIT": "4G"}).source == "cgroup"  # ties go to the cgroup


def test_mem_limit_zero_or_above_ram(tmp_path: Path) -> None:
    roots(tmp_path, None)
    assert limit(tmp_path, {"MEM_LIMIT": "0"}).source == "system"  # 0 = no limit
    assert limit(tmp_path, {"MEM_LIMIT": str(2 * RAM)}).source == "system"


def test_garbled_mem_limit_is_logged_once_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    roots(tmp_path, None)
    monitor_mod._bad_env_values.discard("lots")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            assert limit(tmp_path, {"MEM_LIMIT": "lots"}).source == "system"
    assert [r.getMessage() for r in caplog.records] == [
        "MEM_LIMIT ignored: " + str(_parse_error("lots"))
    ]


def _parse_error(text: str) -> ValueError:
    try:
        parse_size(text)
    except ValueError as exc:
        return exc
    raise AssertionError(text)


def test_default_environ_is_read_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    roots(tmp_path, None)
    monkeypatch.setenv("MEM_LIMIT", "123456789")
    got = read_memory_limit(None, str(tmp_path / "cgroup"), str(tmp_path / "proc"))
    assert (got.bytes, got.source) == (123456789, "MEM_LIMIT")


# --- MemoryMonitor ---------------------------------------------------------------------------


def fed(values: Iterable[int]) -> Callable[[], int]:
    it = iter(values)
    return lambda: next(it)


def fake_monitor(tmp_path: Path, rss: Callable[[], int], **kw: object) -> MemoryMonitor:
    """A monitor with no cgroup, MEM_LIMIT=1000 bytes, and RSS fed by ``rss``."""
    proc, cg = roots(tmp_path, None)
    env = kw.pop("environ", {"MEM_LIMIT": "1000"})
    return MemoryMonitor(proc_root=proc, cgroup_root=cg, environ=env, rss_reader=rss, **kw)  # type: ignore[arg-type]


def test_real_process_check() -> None:
    m = MemoryMonitor()
    assert m.last is None and m.history == []
    snap = m.check()
    assert snap["rss_bytes"] > 0 and snap["limit_bytes"] > 0
    assert snap["limit_source"] in {"cgroup", "MEM_LIMIT", "system"}
    assert snap["status"] in {"ok", "warning", "critical"} and snap["status"] == m.status
    assert snap["pss_bytes"] is None and snap["uss_bytes"] is None
    assert snap["sessions"] is None and snap["leak_suspected"] is False
    assert snap["usage_pct"] == pytest.approx(
        100 * snap["rss_bytes"] / snap["limit_bytes"], abs=0.006
    )
    assert json.loads(json.dumps(snap)) == snap
    assert m.last == snap == m.as_dict()
    detailed = m.check(detailed=True)
    assert detailed["uss_bytes"] > 0 and detailed["pss_bytes"] > 0  # Linux has both
    assert [h[1] for h in m.history] == [snap["rss_bytes"], detailed["rss_bytes"]]


def test_mem_limit_set_after_creation_is_used_next_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, cg = roots(tmp_path, None)
    monkeypatch.delenv("MEM_LIMIT", raising=False)
    m = MemoryMonitor(proc_root=proc, cgroup_root=cg)
    assert m.check()["limit_source"] == "system"
    monkeypatch.setenv("MEM_LIMIT", "256MB")
    snap = m.check()
    assert (snap["limit_bytes"], snap["limit_source"]) == (256 * 10**6, "MEM_LIMIT")


def test_as_dict_checks_once_when_empty(tmp_path: Path) -> None:
    m = fake_monitor(tmp_path, fed([100, 200]))
    assert m.as_dict()["rss_bytes"] == 100
    assert m.as_dict()["rss_bytes"] == 100  # returns the last check, no new sample
    assert len(m.history) == 1


def test_status_changes_are_logged_once_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str, float]] = []
    m = fake_monitor(
        tmp_path,
        fed([100, 750, 800, 900, 950, 899, 100, 100]),
        on_status_change=lambda old, new, snap: seen.append((old, new, snap["usage_pct"])),
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        statuses = [m.check()["status"] for _ in range(8)]
    assert statuses == ["ok", "warning", "warning", "critical", "critical", "warning", "ok", "ok"]
    assert seen == [
        ("ok", "warning", 75.0),
        ("warning", "critical", 90.0),
        ("critical", "warning", 89.9),
        ("warning", "ok", 10.0),
    ]
    levels = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records]
    assert levels == [
        ("WARNING", "kernel memory ok -> warning"),
        ("WARNING", "kernel memory warning -> critical"),
        ("WARNING", "kernel memory critical -> warning"),
        ("INFO", "kernel memory warning -> ok"),
    ]
    assert m.status == "ok"


def test_failing_callback_is_logged_and_swallowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(old: str, new: str, snap: object) -> None:
        raise RuntimeError("dashboard gone")

    m = fake_monitor(tmp_path, fed([950]), on_status_change=boom)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert m.check()["status"] == "critical"
    assert any("callback failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_history_is_bounded_and_a_copy(tmp_path: Path) -> None:
    m = fake_monitor(tmp_path, fed(range(1, 100)), history_size=5, leak_window=3)
    for _ in range(12):
        m.check()
    hist = m.history
    assert [rss for _, rss, _ in hist] == [8, 9, 10, 11, 12]
    assert all(a[0] <= b[0] for a, b in pairwise(hist))  # oldest first
    hist.clear()
    assert len(m.history) == 5


def test_session_counter_failure_gives_none(tmp_path: Path) -> None:
    def broken() -> int:
        raise RuntimeError

    assert fake_monitor(tmp_path, fed([1]), session_count=broken).check()["sessions"] is None


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"warning_pct": 0}, "0 < warning_pct < critical_pct <= 100"),
        ({"warning_pct": 90, "critical_pct": 90}, "warning_pct=90"),
        ({"warning_pct": 95, "critical_pct": 90}, "critical_pct=90"),
        ({"critical_pct": 101}, "critical_pct=101"),
        ({"history_size": 0}, "history_size"),
        ({"leak_window": 2}, "leak_window"),
        ({"history_size": 10, "leak_window": 11}, "leak_window"),
        ({"leak_min_growth_bytes": -1}, "leak_min_growth_bytes"),
    ],
)
def test_invalid_parameters(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MemoryMonitor(**kw)  # type: ignore[arg-type]


def test_concurrent_checks_are_safe(tmp_path: Path) -> None:
    lock = threading.Lock()
    counter = iter(range(10**6))

    def rss() -> int:
        with lock:
            return next(counter) % 900 + 1

    m = fake_monitor(tmp_path, rss, history_size=1000)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(200):
                m.check()
                m.history  # noqa: B018 - reading while others write
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(m.history) == 1000


# --- leak detection --------------------------------------------------------------------------


def run(m: MemoryMonitor, n: int) -> list[bool]:
    return [m.check()["leak_suspected"] for _ in range(n)]


def leak_monitor(tmp_path: Path, rss: Iterable[int], **kw: object) -> MemoryMonitor:
    return fake_monitor(tmp_path, fed(rss), environ={"MEM_LIMIT": "1T"}, **kw)


def test_rising_rss_with_flat_sessions_is_flagged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rising = [500 * MiB + i * 3 * MiB for i in range(30)]
    m = leak_monitor(tmp_path, rising, session_count=lambda: 4)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        flags = run(m, 30)
    assert flags == [False] * 19 + [True] * 11  # needs a full window of 20 samples
    assert m.leak_suspected is True
    leak_logs = [r for r in caplog.records if "leak" in r.getMessage()]
    assert len(leak_logs) == 1 and leak_logs[0].levelname == "WARNING"
    assert "57.0 MiB over the last 20 checks" in leak_logs[0].getMessage()


def test_rising_rss_without_session_counter_is_flagged(tmp_path: Path) -> None:
    # Noisy but mostly rising (every fifth step dips): still a leak.
    series = [500 * MiB + i * 4 * MiB - (6 * MiB if i % 5 == 4 else 0) for i in range(20)]
    assert run(leak_monitor(tmp_path, series), 20)[-1] is True


def test_rising_rss_with_rising_sessions_is_not_flagged(tmp_path: Path) -> None:
    rising = [500 * MiB + i * 3 * MiB for i in range(40)]
    m = leak_monitor(tmp_path, rising, session_count=fed(range(40)))
    assert not any(run(m, 40))


def test_noise_is_not_flagged(tmp_path: Path) -> None:
    rnd = random.Random(1234)
    noise = [500 * MiB + rnd.randint(-40 * MiB, 40 * MiB) for _ in range(300)]
    m = leak_monitor(tmp_path, noise, history_size=300)
    assert not any(run(m, 300))


def test_one_big_allocation_is_not_a_leak(tmp_path: Path) -> None:
    # Loading a data frame: one jump, then flat. Growth is large and every step is
    # non-decreasing, but no trend: must not be flagged.
    step = [500 * MiB] * 5 + [1500 * MiB] * 35
    assert not any(run(leak_monitor(tmp_path, step), 40))


def test_staircase_growth_is_a_leak(tmp_path: Path) -> None:
    # A leak driven by cell runs grows in steps between idle checks: still flagged.
    stairs = [500 * MiB + (i // 4) * 20 * MiB for i in range(20)]
    assert run(leak_monitor(tmp_path, stairs), 20)[-1] is True


def test_small_growth_is_not_flagged(tmp_path: Path) -> None:
    slow = [500 * MiB + i * MiB for i in range(40)]  # 19 MiB per window < 32 MiB
    assert not any(run(leak_monitor(tmp_path, slow), 40))


def test_leak_flag_clears_when_growth_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    series = [500 * MiB + i * 3 * MiB for i in range(20)] + [600 * MiB] * 20
    m = leak_monitor(tmp_path, series)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        flags = run(m, 40)
    assert flags[19] is True and flags[-1] is False and m.leak_suspected is False
    assert [r.levelname for r in caplog.records if "leak" in r.getMessage()] == ["WARNING", "INFO"]


def test_session_change_inside_window_suppresses_flag(tmp_path: Path) -> None:
    rising = [500 * MiB + i * 3 * MiB for i in range(20)]
    sessions = [3] * 10 + [4] * 10
    m = leak_monitor(tmp_path, rising, session_count=fed(sessions))
    assert not any(run(m, 20))
