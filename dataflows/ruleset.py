"""The rule set as data: loaded and validated from a versioned TOML file (``config/rules.toml``).

Pure Python: no Bytewax, Kafka or MongoDB, so rules can be unit-tested and backtested alone.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SeverityName = Literal["low", "medium", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "config" / "rules.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleBase(_Strict):
    enabled: bool = True
    score: float = Field(gt=0, lt=1)
    severity: SeverityName


class HighAmount(RuleBase):
    limit: float = Field(gt=0)


class AmountSpike(RuleBase):
    min_history: int = Field(ge=2)
    min_ratio: float = Field(gt=1)
    min_robust_z: float = Field(gt=0)
    min_amount: float = Field(ge=0)


class VelocityCount(RuleBase):
    window_minutes: float = Field(gt=0)
    max_count: int = Field(ge=1)


class VelocityAmount(RuleBase):
    window_minutes: float = Field(gt=0)
    limit: float = Field(gt=0)
    min_count: int = Field(ge=1)


class CardTesting(RuleBase):
    window_minutes: float = Field(gt=0)
    small_max: float = Field(gt=0)
    min_small: int = Field(ge=1)
    large_min: float = Field(gt=0)

    @model_validator(mode="after")
    def _large_above_small(self) -> CardTesting:
        if self.large_min <= self.small_max:
            raise ValueError("large_min must be greater than small_max")
        return self


class ImpossibleTravel(RuleBase):
    max_speed_kmh: float = Field(gt=0)
    min_distance_km: float = Field(ge=0)


class LocationAnomaly(RuleBase):
    min_history: int = Field(ge=1)
    new_country_min_km: float = Field(ge=0)
    far_km: float = Field(gt=0)


class Rules(_Strict):
    high_amount: HighAmount
    amount_spike: AmountSpike
    velocity_count: VelocityCount
    velocity_amount: VelocityAmount
    card_testing: CardTesting
    impossible_travel: ImpossibleTravel
    location_anomaly: LocationAnomaly


class Engine(_Strict):
    allowed_lateness_minutes: float = Field(ge=0)
    profile_size: int = Field(ge=2, le=200)
    profile_days: float = Field(gt=0)
    max_window_events: int = Field(ge=8, le=10_000)
    dedupe_hours: float = Field(default=72, gt=0)


class Currency(_Strict):
    base: str = Field(pattern=r"^[A-Z]{3}$")
    rates: dict[str, float]

    @model_validator(mode="after")
    def _base_is_one(self) -> Currency:
        if self.rates.get(self.base) != 1.0:
            raise ValueError(f"rates must contain the base currency {self.base} = 1.0")
        if any(r <= 0 for r in self.rates.values()):
            raise ValueError("every rate must be positive")
        return self


class SeverityThresholds(_Strict):
    critical: float = Field(gt=0, le=1)
    high: float = Field(gt=0, le=1)
    medium: float = Field(gt=0, le=1)


class RuleSet(_Strict):
    """A whole rule file. ``version`` goes into every alert."""

    version: str = Field(min_length=1, max_length=64)
    engine: Engine
    currency: Currency
    rules: Rules
    severity: SeverityThresholds

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
            self.short_horizon_ms, self.profile_horizon_ms + lateness, self.dedupe_horizon_ms
        )

    @property
    def dedupe_horizon_ms(self) -> int:
        return int(self.engine.dedupe_hours * 3_600_000)

    def severity_for(self, score: float) -> str:
        s = self.severity
        if score >= s.critical:
            return "critical"
        if score >= s.high:
            return "high"
        if score >= s.medium:
            return "medium"
        return "low"


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
