from pathlib import Path

import pytest

from dataflows.detection.ruleset import DEFAULT_RULES_FILE, RuleFileError, load_ruleset


def test_default_rule_file_is_valid_and_versioned() -> None:
    rs = load_ruleset()
    assert rs.version
    assert rs.currency.rates[rs.currency.base] == 1.0
    assert all(getattr(rs.rules, n).enabled for n in type(rs.rules).model_fields)


def test_every_rule_in_the_file_has_a_rationale_comment() -> None:
    text = DEFAULT_RULES_FILE.read_text()
    for section in text.split("[rules.")[1:]:
        body = section.split("\n", 1)[1]
        assert body.lstrip().startswith("#"), f"rule {section.split(']')[0]} lacks a rationale"


def test_an_invalid_rule_file_names_the_file_and_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(DEFAULT_RULES_FILE.read_text().replace("max_count = 4", "max_count = -1"))
    with pytest.raises(RuleFileError, match=r"(?s)rules\.toml is invalid.*max_count"):
        load_ruleset(bad)


def test_a_missing_rule_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="FRAUD_RULES_FILE"):
        load_ruleset(tmp_path / "nope.toml")


def test_unknown_keys_are_rejected_so_typos_do_not_silently_disable_a_limit(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(DEFAULT_RULES_FILE.read_text().replace("max_count = 4", "max_cuont = 4"))
    with pytest.raises(RuleFileError):
        load_ruleset(bad)
