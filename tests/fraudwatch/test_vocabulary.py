"""The shared vocabulary is consistent with itself: every word the console shows has a label."""

from fraudwatch.vocabulary import (
    BASE_CURRENCY,
    EXCHANGE_RATES,
    RULE_LABELS,
    RULE_NAMES,
    STATUS_LABELS,
    STATUSES,
    TRANSITIONS,
)


def test_every_status_has_a_label_and_a_way_onward() -> None:
    assert set(STATUS_LABELS) == set(STATUSES)
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(set(onward) <= set(STATUSES) for onward in TRANSITIONS.values())


def test_every_rule_name_has_a_label() -> None:
    assert set(RULE_LABELS) == set(RULE_NAMES)


def test_rates_are_positive_and_the_base_currency_is_one() -> None:
    assert EXCHANGE_RATES[BASE_CURRENCY] == 1.0
    assert all(rate > 0 for rate in EXCHANGE_RATES.values())
