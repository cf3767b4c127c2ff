"""UploadShare: one upload limit split between libtorrent and the web seed (pure)."""

from __future__ import annotations

import pytest

from seeder.seed.upload_share import MIN_SHARE, UploadShare

LIMIT = 4 * 1024 * 1024
CHUNK = 256 * 1024
TICK = 0.5


def test_no_limit_never_waits_and_leaves_libtorrent_unlimited() -> None:
    share = UploadShare(0)
    assert share.take(10**9, 0.0) == 0.0
    share.tick(1.0, 10**9)
    assert share.bt_limit == 0


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError):
        UploadShare(-1)
    with pytest.raises(ValueError):
        UploadShare(LIMIT, burst=0)


def test_idle_web_seed_leaves_libtorrent_the_whole_limit() -> None:
    share = UploadShare(LIMIT)
    assert share.bt_limit == LIMIT
    assert share.take(CHUNK, 0.0) == 0.0  # the burst: the first chunk goes at once
    assert share.web_rate == LIMIT * MIN_SHARE
    assert share.bt_limit == LIMIT - LIMIT * MIN_SHARE  # lowered at once, not at the tick
    share.tick(0.5, 0)
    share.tick(1.0, 0)  # nothing sent since: the share goes back
    assert share.web_rate == 0 and share.bt_limit == LIMIT


def simulate(share: UploadShare, seconds: float, *, web: bool, bt: bool,
             step: float = 0.01) -> tuple[list[tuple[float, int]], float, float]:
    """Greedy senders: the web seed sends a chunk whenever `take` lets it, libtorrent its
    whole bt_limit. Every send as (time, bytes); the web seed's and libtorrent's totals."""
    sends: list[tuple[float, int]] = []
    web_total = bt_total = 0.0
    next_web, next_tick, bt_since = 0.0, TICK, 0.0
    t = 0.0
    while t < seconds:
        if web and t >= next_web:
            wait = share.take(CHUNK, t)
            next_web = t + wait
            sends.append((next_web, CHUNK))
            web_total += CHUNK
        if bt:
            n = share.bt_limit * step
            sends.append((t, int(n)))
            bt_total += n
            bt_since += n
        t += step
        if t >= next_tick:
            share.tick(t, int(bt_since))
            bt_since, next_tick = 0.0, next_tick + TICK
    return sends, web_total, bt_total


def peak(sends: list[tuple[float, int]], window: float, seconds: float) -> float:
    worst = 0.0
    start = 0.0
    while start + window <= seconds:
        worst = max(worst, sum(n for t, n in sends if start <= t < start + window))
        start += 0.05
    return worst


def test_both_busy_never_exceed_the_limit_and_end_up_halves() -> None:
    share = UploadShare(LIMIT)
    sends, web, bt = simulate(share, 20.0, web=True, bt=True)
    assert peak(sends, 1.0, 20.0) <= LIMIT + share.burst + CHUNK
    assert share.web_rate == pytest.approx(LIMIT / 2)
    assert web + bt <= LIMIT * 20.0 + share.burst + CHUNK
    assert 0.4 < web / (web + bt) < 0.6


def test_web_seed_alone_gets_all_but_libtorrents_least_share() -> None:
    share = UploadShare(LIMIT)
    sends, web, _ = simulate(share, 10.0, web=True, bt=False)
    assert share.web_rate == pytest.approx(LIMIT * (1 - MIN_SHARE))
    assert peak(sends, 1.0, 10.0) <= LIMIT + share.burst + CHUNK
    assert web >= 0.8 * LIMIT * (1 - MIN_SHARE) * 10.0  # it grew within a couple of ticks


def test_a_slow_web_seed_keeps_only_what_it_uses() -> None:
    share = UploadShare(LIMIT)
    share.take(CHUNK, 0.0)
    for i in range(1, 6):  # a chunk every tick, never waiting: 512 KiB/s
        share.take(CHUNK, i * TICK - 0.1)
        share.tick(i * TICK, 0)
    assert share.web_rate == max(LIMIT * MIN_SHARE, 1.5 * CHUNK / TICK)
    assert share.bt_limit + share.web_rate == pytest.approx(LIMIT, abs=1)


def test_a_response_sleeping_on_its_wait_still_counts_as_waiting() -> None:
    share = UploadShare(1024 * 1024, burst=1024)
    wait = share.take(1024 * 1024, 0.0)  # a big chunk on credit: sleeps past the next tick
    assert wait > TICK
    share.tick(TICK, 0)
    assert share.web_rate > 1024 * 1024 * MIN_SHARE  # grew: it was waiting, not idle


def test_paced_bodies_wait_as_told_before_each_chunk() -> None:
    import trio

    from seeder.s3api import bodies

    asked: list[int] = []

    async def source():  # type: ignore[no-untyped-def]
        for chunk in (b"ab", b"cde"):
            yield chunk

    def wait_for(n: int) -> float:
        asked.append(n)
        return 0.0 if len(asked) == 1 else 0.001

    async def main() -> list[bytes]:
        return [c async for c in bodies.paced(source(), wait_for)]

    assert trio.run(main) == [b"ab", b"cde"]
    assert asked == [2, 3]
