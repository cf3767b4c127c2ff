"""The embedded default configuration (no file given: one public local bucket ``data`` at
``./data``) and the sample object a fresh ``seeder serve`` puts in it.
"""

from __future__ import annotations

from pathlib import Path

from seeder.config.schema import Config

__all__ = [
    "DEFAULTS_LABEL",
    "DEFAULT_BUCKET_NAME",
    "DEFAULT_BUCKET_PATH",
    "SAMPLE_BODY",
    "SAMPLE_OBJECT",
    "ensure_default_bucket",
]

DEFAULTS_LABEL = "(defaults)"  # the origin named in problems about the embedded default config
DEFAULT_BUCKET_NAME = "data"
DEFAULT_BUCKET_PATH = "./data"
SAMPLE_OBJECT = "hello.txt"
SAMPLE_BODY = (
    b"Hello from s3torrent.\n"
    b"This file was created because the default bucket directory was empty.\n"
    b"Fetch its torrent: curl -o hello.torrent 'http://127.0.0.1:8000/data/hello.txt?torrent'\n"
)


def ensure_default_bucket(config: Config) -> Path | None:
    """Create the embedded default bucket's directory, and in it ``hello.txt`` when it is
    empty, so a fresh ``seeder serve`` has something to serve. Returns the sample file's
    path when it was written, else None. Only for a local bucket named ``data``; raises
    OSError if the directory cannot be made."""
    bucket = config.bucket(DEFAULT_BUCKET_NAME)
    if bucket is None or bucket.backend != "local" or bucket.path is None:
        return None
    root = Path(bucket.path)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        return None
    sample = root / SAMPLE_OBJECT
    sample.write_bytes(SAMPLE_BODY)
    return sample
