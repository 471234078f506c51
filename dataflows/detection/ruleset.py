"""The rule set as data: loaded and validated from a versioned TOML file (``config/rules.toml``).

Pure Python: no Bytewax, Kafka or MongoDB, so rules can be unit-tested and backtested alone.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fraudwatch.vocabulary import BASE_CURRENCY, EXCHANGE_RATES

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[2] / "config" / "rules.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleBase(_Strict):
    enabled: bool = True
    # Log-odds this signal adds when it fires (natural log; docs/detection.md).
    weight: float = Field(gt=0, le=20)


class AmountVsHabit(_Strict):
    enabled: bool = True
    min_history: int = Field(ge=2)
    min_z: float = Field(gt=0)
    min_ratio: float = Field(gt=1)
    weight_per_z: float = Field(ge=0)
    base_weight: float = Field(gt=0)
    max_weight: float = Field(gt=0, le=20)


class AmountVsMerchant(RuleBase):
    min_transactions: int = Field(ge=1)
    min_ratio: float = Field(gt=1)


class VelocityCount(RuleBase):
    window_minutes: float = Field(gt=0)
    max_count: int = Field(ge=1)
    weight_per_extra: float = Field(ge=0)
    max_weight: float = Field(gt=0, le=20)


class VelocityAmount(RuleBase):
    window_minutes: float = Field(gt=0)
    min_count: int = Field(ge=1)
    min_history_days: float = Field(ge=0)
    min_ratio: float = Field(gt=1)


class CardTesting(RuleBase):
    window_minutes: float = Field(gt=0)
    small_ratio: float = Field(gt=0, lt=1)
    # The population's usual amount in the base currency: the reference of a card without
    # history (the one absolute amount of the rule file; docs/detection.md says why).
    population_median: float = Field(gt=0)
    min_small: int = Field(ge=1)
    weight_per_extra: float = Field(ge=0)
    large_ratio: float = Field(gt=1)
    large_weight: float = Field(ge=0)
    max_weight: float = Field(gt=0, le=20)


class ImpossibleTravel(RuleBase):
    max_speed_kmh: float = Field(gt=0)
    min_distance_km: float = Field(ge=0)
    always_alert: bool = True


class LocationAnomaly(RuleBase):
    min_history: int = Field(ge=1)
    new_country_min_km: float = Field(ge=0)
    far_km: float = Field(gt=0)
    cnp_extra_weight: float = Field(ge=0)


class CardActivity(RuleBase):
    min_history_days: float = Field(ge=0)
    min_count: int = Field(ge=1)
    min_ratio: float = Field(gt=1)


class MerchantRisk(_Strict):
    enabled: bool = True
    prior_strength: float = Field(gt=0)
    min_frauds: int = Field(ge=1)
    max_weight: float = Field(gt=0, le=20)


class CompromisedCard(RuleBase):
    always_alert: bool = True


class Rules(_Strict):
    amount_vs_habit: AmountVsHabit
    amount_vs_merchant: AmountVsMerchant
    velocity_count: VelocityCount
    velocity_amount: VelocityAmount
    card_testing: CardTesting
    impossible_travel: ImpossibleTravel
    location_anomaly: LocationAnomaly
    card_activity: CardActivity
    merchant_risk: MerchantRisk
    compromised_card: CompromisedCard


class Engine(_Strict):
    allowed_lateness_minutes: float = Field(ge=0)
    profile_size: int = Field(ge=2, le=200)
    profile_days: float = Field(gt=0)
    max_window_events: int = Field(ge=8, le=10_000)
    dedupe_hours: float = Field(default=72, gt=0)


class Currency(_Strict):
    """The exchange-rate table the detector prices with: the contract's, never a rule file's."""

    base: str = Field(pattern=r"^[A-Z]{3}$")
    rates: dict[str, float]

    @model_validator(mode="after")
    def _base_is_one(self) -> Currency:
        if self.rates.get(self.base) != 1.0:
            raise ValueError(f"rates must contain the base currency {self.base} = 1.0")
        if any(r <= 0 for r in self.rates.values()):
            raise ValueError("every rate must be positive")
        return self


CURRENCY = Currency(base=BASE_CURRENCY, rates=EXCHANGE_RATES)


class Labels(_Strict):
    label_delay_days: int = Field(ge=1, le=90)
    compromised_days: float = Field(gt=0)


class Score(_Strict):
    prior: float = Field(gt=0, lt=0.5)
    alert_threshold: float = Field(gt=0, le=1)


class SeverityConfig(_Strict):
    """How an alert's score becomes its severity band (docs/detection.md, *Severity*).

    ``*_share``: the trainer sets each operating point's cut-offs so that these shares of the
    recent alerts the score raised are at or above each band (cumulative, from the top).
    ``*_odds``: where there are no recent alerts to take shares of (no operating point yet,
    or none alerted), the cut-offs are these multiples of the alert threshold's odds.
    """

    critical_share: float = Field(default=0.1, gt=0, lt=1)
    high_share: float = Field(default=0.3, gt=0, lt=1)
    medium_share: float = Field(default=0.6, gt=0, lt=1)
    medium_odds: float = Field(default=3.0, gt=1)
    high_odds: float = Field(default=10.0, gt=1)
    critical_odds: float = Field(default=100.0, gt=1)

    @model_validator(mode="after")
    def _ordered(self) -> SeverityConfig:
        if not self.critical_share < self.high_share < self.medium_share:
            raise ValueError("shares must grow from critical to high to medium (cumulative)")
        if not self.medium_odds < self.high_odds < self.critical_odds:
            raise ValueError("odds multiples must grow from medium to high to critical")
        return self


class RuleSet(_Strict):
    """A whole rule file. ``version`` goes into every alert."""

    version: str = Field(min_length=1, max_length=64)
    engine: Engine
    labels: Labels
    score: Score
    rules: Rules
    severity: SeverityConfig

    @model_validator(mode="before")
    @classmethod
    def _no_rate_table(cls, data: Any) -> Any:
        # Said plainly: "extra inputs are not permitted" would not say where the rates went.
        if isinstance(data, dict) and "currency" in data:
            raise ValueError(
                "[currency] is no longer read from the rule file: the exchange rates are"
                " fraudwatch/vocabulary.py's EXCHANGE_RATES (one table for producer and detector)"
            )
        return data

    @property
    def currency(self) -> Currency:
        """The base currency and exchange rates (``fraudwatch.vocabulary``)."""
        return CURRENCY

    @property
    def short_horizon_ms(self) -> int:
        """How far back the window rules look, plus the allowed lateness, in ms."""
        r = self.rules
        longest = max(
            r.velocity_count.window_minutes,
            r.velocity_amount.window_minutes,
            r.card_testing.window_minutes,
        )
        return int((longest + self.engine.allowed_lateness_minutes) * 60_000)

    @property
    def profile_horizon_ms(self) -> int:
        return int(self.engine.profile_days * 86_400_000)

    @property
    def eviction_horizon_ms(self) -> int:
        """An idle card whose newest event is older than this has nothing any rule could use."""
        lateness = int(self.engine.allowed_lateness_minutes * 60_000)
        return max(
            self.short_horizon_ms,
            self.profile_horizon_ms + lateness,
            self.dedupe_horizon_ms,
            self.compromised_ms + lateness,
        )

    @property
    def dedupe_horizon_ms(self) -> int:
        return int(self.engine.dedupe_hours * 3_600_000)

    @property
    def label_delay_ms(self) -> int:
        return self.labels.label_delay_days * 86_400_000

    @property
    def compromised_ms(self) -> int:
        return int(self.labels.compromised_days * 86_400_000)


class RuleFileError(ValueError):
    """The rule file is missing or invalid; the message names the file and the problem."""


def load_ruleset(path: Path | str | None = None) -> RuleSet:
    """Load and validate a rule file (default: ``config/rules.toml``)."""
    p = Path(path) if path else DEFAULT_RULES_FILE
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise RuleFileError(f"rule file {p} does not exist (set FRAUD_RULES_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"rule file {p} is not valid TOML: {exc}") from None
    try:
        return RuleSet.model_validate(raw)
    except ValidationError as exc:
        raise RuleFileError(f"rule file {p} is invalid:\n{exc}") from None
