import hashlib
import json
from pathlib import Path

import pytest

from dataflows.detection.ruleset import DEFAULT_RULES_FILE, RuleFileError, Rules, load_ruleset
from fraudwatch.vocabulary import EXCHANGE_RATES, SIGNAL_NAMES

# The rate table a rule-set version scored with. The rates live in the contract, outside the
# versioned rule file, yet move scores (card habits are kept in the base currency): a changed
# table must come with a new `version` in config/rules.toml (then add its line here).
RATES_OF_VERSION = {
    "2026.12.1": "11ec6d5808337c0b",
    "2026.12.2": "11ec6d5808337c0b",
    "2026.12.3": "11ec6d5808337c0b",
}


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


def test_the_rule_file_configures_exactly_the_contracts_signals() -> None:
    assert set(Rules.model_fields) == set(SIGNAL_NAMES)


def test_a_rule_file_with_its_own_rate_table_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(DEFAULT_RULES_FILE.read_text() + '\n[currency]\nbase = "EUR"\n')
    with pytest.raises(RuleFileError, match=r"fraudwatch/vocabulary\.py"):
        load_ruleset(bad)


def test_a_changed_rate_table_comes_with_a_new_rule_set_version() -> None:
    digest = hashlib.sha256(json.dumps(EXCHANGE_RATES, sort_keys=True).encode()).hexdigest()[:16]
    assert RATES_OF_VERSION.get(load_ruleset().version, digest) == digest
