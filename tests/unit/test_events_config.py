"""[events] in the config: defaults, the token rule, the environment, SNS topic ARNs."""

from __future__ import annotations

from pathlib import Path

import pytest

from seeder.config import ConfigError, EventsConfig, load


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "seeder.toml"
    path.write_text(text + '\n[[buckets]]\nname = "data"\npath = "data"\n')
    return path


def test_off_by_default(tmp_path: Path) -> None:
    assert load(write(tmp_path, ""), {}).events == EventsConfig()
    assert EventsConfig().enabled is False


def test_token_required_when_enabled(tmp_path: Path) -> None:
    path = write(tmp_path, "[events]\nenabled = true\n")
    with pytest.raises(ConfigError) as info:
        load(path, {})
    assert info.value.problems == [
        f"{path}: events.token: missing: required when events.enabled is true "
        "(or set SEEDER_EVENTS_TOKEN)"
    ]


def test_token_from_the_environment_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "[events]\nenabled = true\n")
    cfg = load(path, {"SEEDER_EVENTS_TOKEN": "t0ken", "SEEDER_EVENTS_SNS_TOPIC_ARNS":
                      "arn:aws:sns:us-east-1:1:a, arn:aws-cn:sns:cn-north-1:2:b"})
    assert cfg.events.token == "t0ken" and "t0ken" not in repr(cfg)
    assert cfg.events.sns_topic_arns == ("arn:aws:sns:us-east-1:1:a",
                                         "arn:aws-cn:sns:cn-north-1:2:b")
    bad = write(tmp_path, '[events]\ntoken = ["secret-list"]\n')
    with pytest.raises(ConfigError) as info:
        load(bad, {})
    assert info.value.problems == [f"{bad}: events.token: expected a string, got array"]


@pytest.mark.parametrize("arn", ["bogus", "arn:aws:sqs:us-east-1:1:q", "arn:aws:sns:us-east-1:1:",
                                 "arn:aws:sns:us-east-1:1:a:extra"])
def test_sns_topic_arns_are_checked(tmp_path: Path, arn: str) -> None:
    path = write(tmp_path, f'[events]\nsns_topic_arns = ["{arn}"]\n')
    with pytest.raises(ConfigError) as info:
        load(path, {})
    assert info.value.problems == [
        f"{path}: events.sns_topic_arns: {arn!r} is not an SNS topic ARN "
        "(arn:aws:sns:REGION:ACCOUNT:TOPIC)"
    ]
