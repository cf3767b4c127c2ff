"""seeder.s3api.capability: a token opens one object version, under one key, and nothing else."""

from __future__ import annotations

from seeder.s3api import capability

KEY = b"k" * 32
ARGS = ("priv", "dir/a b.bin", "etag1", "v1")


def test_bound_to_every_field():
    t = capability.token(KEY, *ARGS)
    assert len(t) == capability.TOKEN_CHARS and t == capability.token(KEY, *ARGS)
    assert capability.valid(KEY, t, *ARGS)
    for i in range(4):
        other = list(ARGS)
        other[i] = (other[i] or "") + "x"
        assert not capability.valid(KEY, t, *other)
    assert not capability.valid(b"j" * 32, t, *ARGS)
    assert not capability.valid(KEY, t[:-1] + ("A" if t[-1] != "A" else "B"), *ARGS)
    assert not capability.valid(KEY, "", *ARGS)
    assert not capability.valid(KEY, "\udcff", *ARGS)
    # no version and an empty version are the same object version
    assert capability.token(KEY, "b", "k", "e", None) == capability.token(KEY, "b", "k", "e", "")


def test_url():
    assert capability.with_token("http://h/b/k", "a-b_c") == "http://h/b/k?webseed-token=a-b_c"
    assert capability.with_token("http://h/b/k?versionId=1", "t") == \
        "http://h/b/k?versionId=1&webseed-token=t"
