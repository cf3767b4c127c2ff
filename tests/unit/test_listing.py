"""seeder.s3api.listing and results: list parameters -> ListRequest or S3's error, and the
XML of a page, in S3's namespace and element order."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seeder.s3api import listing, results
from seeder.s3api.errors import S3Error
from seeder.store import ObjectInfo
from seeder.store.paging import ListPage

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def test_defaults_and_versions():
    v1 = listing.parse_list([("prefix", "a/"), ("marker", "a/b"), ("start-after", "x")])
    assert (v1.v2, v1.prefix, v1.start_after, v1.max_keys, v1.after) == (
        False, "a/", "a/b", 1000, "a/b")
    v2 = listing.parse_list([("list-type", "2"), ("start-after", "x"), ("marker", "m"),
                             ("max-keys", "5000"), ("fetch-owner", "true")])
    assert (v2.v2, v2.start_after, v2.max_keys, v2.page_size, v2.fetch_owner) == (
        True, "x", 5000, 1000, True)
    token = listing.encode_token("dir/é/")
    v2t = listing.parse_list([("list-type", "2"), ("continuation-token", token),
                              ("start-after", "a")])
    assert v2t.after == "dir/é/"


@pytest.mark.parametrize(("params", "argument"), [
    ([("max-keys", "-1")], "maxKeys"),
    ([("max-keys", "abc")], "max-keys"),
    ([("max-keys", "99999999999")], "max-keys"),
    ([("encoding-type", "bogus")], "encoding-type"),
    ([("list-type", "2"), ("continuation-token", "bogus")], "continuation-token"),
    ([("list-type", "2"), ("continuation-token", "")], "continuation-token"),
    ([("list-type", "2"), ("continuation-token", "%%%")], "continuation-token"),
    ([("list-type", "1")], "list-type"),
])
def test_bad_parameters(params, argument):
    with pytest.raises(S3Error) as info:
        listing.parse_list(params)
    assert (info.value.code, info.value.status) == ("InvalidArgument", 400)
    assert info.value.get("ArgumentName") == argument


@given(st.text())
def test_tokens_round_trip(after):
    after = after.encode("utf-8", "replace").decode("utf-8")
    try:
        after.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert listing.decode_token(listing.encode_token(after)) == after


@given(st.text(max_size=40))
def test_any_token_parses_or_is_invalid_argument(token):
    try:
        listing.decode_token(token)
    except S3Error as err:
        assert err.code == "InvalidArgument"


def test_v2_xml_order_and_url_encoding():
    req = listing.parse_list([("list-type", "2"), ("delimiter", "/"), ("encoding-type", "url"),
                              ("start-after", "a b"), ("max-keys", "2")])
    page = ListPage((ObjectInfo("b", "c d+e", 3, "abc", 1255369830.5),), ("f/",), True)
    root = ET.fromstring(results.list_objects("b", req, page, results.Owner("id", "me")))
    assert [e.tag.removeprefix(NS) for e in root] == [
        "Name", "Prefix", "NextContinuationToken", "KeyCount", "MaxKeys", "Delimiter",
        "EncodingType", "IsTruncated", "StartAfter", "Contents", "CommonPrefixes"]
    assert root.findtext(f"{NS}StartAfter") == "a+b"
    (contents,) = root.findall(f"{NS}Contents")
    assert contents.findtext(f"{NS}Key") == "c+d%2Be"
    assert contents.findtext(f"{NS}LastModified") == "2009-10-12T17:50:30.500Z"
    assert contents.findtext(f"{NS}ETag") == '"abc"'
    assert contents.find(f"{NS}Owner") is None  # v2: only with fetch-owner
    token = root.findtext(f"{NS}NextContinuationToken")
    assert listing.decode_token(token) == "f/"


def test_v1_xml_owner_and_next_marker():
    req = listing.parse_list([("delimiter", "/"), ("marker", "a")])
    page = ListPage((ObjectInfo("b", "k", 1, "e", 0.0),), ("p/",), True)
    root = ET.fromstring(results.list_objects("b", req, page, results.Owner("id", "me")))
    assert [e.tag.removeprefix(NS) for e in root][:6] == [
        "Name", "Prefix", "Marker", "NextMarker", "MaxKeys", "Delimiter"]
    assert root.findtext(f"{NS}NextMarker") == "p/"
    assert root.find(f"{NS}Contents/{NS}Owner/{NS}DisplayName").text == "me"


def test_buckets_and_location():
    root = ET.fromstring(results.list_buckets(results.Owner("id", "me"),
                                              [("zz", 0.0), ("aa", 1.0)]))
    assert root.tag == f"{NS}ListAllMyBucketsResult"
    assert [b.findtext(f"{NS}Name") for b in root.iter(f"{NS}Bucket")] == ["aa", "zz"]
    assert ET.fromstring(results.location("us-east-1")).text is None
    assert ET.fromstring(results.location("eu-west-1")).text == "eu-west-1"
