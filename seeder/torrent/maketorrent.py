"""`seeder make-torrent`: the daemon's generator applied to one local file or S3 object."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

import trio

from seeder import __version__
from seeder.config import BucketConfig
from seeder.store import ObjectInfo, Store, make_store
from seeder.torrent import hashing, metainfo
from seeder.torrent.policy import check_qualifies, object_version


def _split_s3(source: str) -> tuple[str, str]:
    rest = source[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ValueError(f"{source}: expected s3://BUCKET/KEY")
    return bucket, key


def _open(source: str, endpoint_url: str | None) -> tuple[Store, str]:
    if source.startswith("s3://"):
        bucket, key = _split_s3(source)
        cfg = BucketConfig(name=bucket, backend="s3", endpoint_url=endpoint_url)
        return make_store(cfg), key
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{source}: not a regular file")
    cfg = BucketConfig(name=path.parent.name or "local", backend="local", path=str(path.parent))
    return make_store(cfg), path.name


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled and sys.stderr.isatty()
        self.shown = -1

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        pct = done * 100 // self.total
        if pct != self.shown:
            self.shown = pct
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\rhashing [{bar:<25}] {pct:3d}%")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.shown >= 0:
            sys.stderr.write("\n")


async def _make(
    source: str,
    *,
    hybrid: bool,
    piece_length: int,
    announce: str | None,
    web_seed: str | None,
    endpoint_url: str | None,
    progress: bool,
) -> bytes:
    store, key = _open(source, endpoint_url)
    try:
        info: ObjectInfo = await store.head(key)
        check_qualifies(info.size, info.sse_c)
        plen = piece_length or metainfo.piece_length_for(info.size)
        bar = _Progress(info.size, progress)
        try:
            hashes = await hashing.hash_object(
                store, info, plen, hybrid=hybrid, threads=os.cpu_count() or 2, on_progress=bar
            )
        finally:
            bar.close()
        url_list = [web_seed] if web_seed else []
        if not url_list and source.startswith("s3://"):
            origin = store.origin_url(key)
            version = object_version(info)
            if origin and version:
                # As the daemon: the web seed keeps the hashed bytes after an overwrite.
                origin += "?versionId=" + quote(version, safe="")
            url_list = [origin] if origin else []
        return metainfo.build_torrent(
            bucket=info.bucket,
            key=info.key,
            size=info.size,
            hashes=hashes,
            announce=announce,
            announce_list=[[announce]] if announce else [],
            url_list=url_list,
            created_by=f"s3torrent/{__version__}",
        )
    finally:
        await store.aclose()


def make_torrent(
    source: str,
    *,
    hybrid: bool = False,
    piece_length: int = 0,
    announce: str | None = None,
    web_seed: str | None = None,
    endpoint_url: str | None = None,
    progress: bool = False,
) -> bytes:
    """Torrent bytes for a local file path or ``s3://bucket/key``, exactly as the daemon
    would generate them (same piece policy, same AWS-shaped info dict).

    Raises ValueError for a bad source or an object that does not qualify, and the
    store's errors (seeder.store.StoreError) for backend failures.
    """
    return trio.run(
        lambda: _make(
            source,
            hybrid=hybrid,
            piece_length=piece_length,
            announce=announce,
            web_seed=web_seed,
            endpoint_url=endpoint_url,
            progress=progress,
        )
    )
