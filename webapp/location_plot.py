"""The alert detail page's location panel: where the card was used, how fast it would have had
to travel, and a tile-free plot of the places.

Only a card-present transaction says where the card is (the terminal's place). The coordinates
of a card-not-present one (online, phone, mail order) are a billing or shipping address: a
speed computed to or from one says nothing and, in the thousands of km/h, looks like impossible
travel. So travel (distance, time apart, implied speed) is measured only between consecutive
card-present uses, as the impossible-travel rule measures it (``dataflows/detection/signals.py``):
card-not-present uses in between are skipped, so card-present → card-not-present → card-present
gives one hop, between the two card-present uses. Card-not-present places are still plotted and
listed, marked as what they are.

No tile server is reachable from an analyst's network in many banks, so the plot is an SVG
scatter (equirectangular, scaled to the points' bounding box) with the distance on each hop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from fraudwatch.alert_store import AlertView
from fraudwatch.geo import haversine_km

# The contract's channel values (fraudwatch.contract.Channel).
CARD_PRESENT = "card_present"
CARD_NOT_PRESENT = "card_not_present"


@dataclass(frozen=True, slots=True)
class TravelLimit:
    """The impossible-travel rule's limits (``[rules.impossible_travel]`` in the rule file)."""

    max_speed_kmh: float
    min_distance_km: float


@dataclass(frozen=True, slots=True)
class CardLocation:
    """One use of the card with coordinates, numbered in time order (the marker's number)."""

    number: int
    when: datetime | None
    country: str
    latitude: float
    longitude: float
    channel: str
    current: bool  # the alerted transaction

    @property
    def card_present(self) -> bool:
        return self.channel == CARD_PRESENT

    @property
    def label(self) -> str:
        """Short text for the map: time and country, and what a non-terminal place is."""
        when = self.when.strftime("%H:%M") if self.when else "?"
        text = f"{when} {self.country}".strip()
        if not self.card_present:
            text += " (CNP)" if self.channel == CARD_NOT_PRESENT else " (channel?)"
        return text

    @property
    def meaning(self) -> str:
        """What the coordinates are, for the table."""
        if self.card_present:
            return "card present: the terminal's place"
        if self.channel == CARD_NOT_PRESENT:
            return "card not present: billing or shipping address, not the card's location"
        return "channel not recorded: not used for travel"


@dataclass(frozen=True, slots=True)
class Hop:
    """The move between two consecutive card-present uses: distance and implied speed."""

    start: CardLocation
    end: CardLocation
    km: float

    @property
    def hours(self) -> float | None:
        if self.start.when is None or self.end.when is None:
            return None
        return (self.end.when - self.start.when).total_seconds() / 3600

    @property
    def instant(self) -> bool:
        """Both uses at the same time (to the second) in different places."""
        return self.hours is not None and self.hours <= 0 and self.km > 0

    @property
    def kmh(self) -> float | None:
        """The implied speed; infinite for a distance covered in no time, as the rule says."""
        hours = self.hours
        if hours is None:
            return None
        if hours <= 0:
            return math.inf if self.km > 0 else None
        return self.km / hours

    def impossible(self, limit: TravelLimit) -> bool:
        """Whether the impossible-travel rule would call this hop impossible."""
        kmh = self.kmh
        return kmh is not None and self.km >= limit.min_distance_km and kmh > limit.max_speed_kmh


def card_locations(alert: AlertView) -> list[CardLocation]:
    """The alert's evidence transactions and the alerted one that have coordinates, in time
    order (a transaction without a time goes first), numbered from 1."""
    uses: list[CardLocation] = []
    for t in alert.evidence_txns:
        if t.latitude is not None and t.longitude is not None:
            current = t.transaction_id == alert.transaction_id
            uses.append(
                CardLocation(0, t.timestamp, t.country, t.latitude, t.longitude, t.channel, current)
            )
    known = any(u.current for u in uses)
    if alert.latitude is not None and alert.longitude is not None and not known:
        uses.append(
            CardLocation(
                0,
                alert.timestamp,
                alert.country,
                alert.latitude,
                alert.longitude,
                alert.channel,
                current=True,
            )
        )
    uses.sort(key=lambda u: u.when or datetime.fromtimestamp(0, UTC))
    return [replace(u, number=n) for n, u in enumerate(uses, start=1)]


def travel_hops(locations: Sequence[CardLocation]) -> list[Hop]:
    """Hops between consecutive card-present uses of ``locations`` (in time order)."""
    present = [loc for loc in locations if loc.card_present]
    return [
        Hop(a, b, haversine_km(a.latitude, a.longitude, b.latitude, b.longitude))
        for a, b in itertools.pairwise(present)
    ]


@dataclass(frozen=True, slots=True)
class PlotPoint:
    x: float
    y: float
    location: CardLocation
    label_left: bool = False  # near the right edge: put the label on the left of the marker


@dataclass(frozen=True, slots=True)
class PlotLeg:
    x1: float
    y1: float
    x2: float
    y2: float
    mx: float
    my: float
    km: float
    impossible: bool


@dataclass(frozen=True, slots=True)
class LocationPlot:
    width: int
    height: int
    points: tuple[PlotPoint, ...]
    legs: tuple[PlotLeg, ...]


def plot_locations(
    locations: Sequence[CardLocation],
    hops: Sequence[Hop] = (),
    limit: TravelLimit | None = None,
    width: int = 520,
    height: int = 300,
) -> LocationPlot | None:
    """Lay out ``locations`` on a ``width`` x ``height`` canvas with a margin, keeping the
    aspect ratio of an equirectangular map, with a leg for each of ``hops``."""
    if not locations:
        return None
    margin = 40.0
    lats = [p.latitude for p in locations]
    lons = [p.longitude for p in locations]
    mid_lat = math.radians((max(lats) + min(lats)) / 2)
    xscale = max(math.cos(mid_lat), 0.1)
    span_x = max((max(lons) - min(lons)) * xscale, 1e-3)
    span_y = max(max(lats) - min(lats), 1e-3)
    scale = min((width - 2 * margin) / span_x, (height - 2 * margin) / span_y)
    off_x = (width - span_x * scale) / 2
    off_y = (height - span_y * scale) / 2

    def project(lat: float, lon: float) -> tuple[float, float]:
        x = off_x + (lon - min(lons)) * xscale * scale
        y = off_y + (max(lats) - lat) * scale
        return round(x, 1), round(y, 1)

    placed = {}
    for loc in locations:
        x, y = project(loc.latitude, loc.longitude)
        placed[loc.number] = PlotPoint(x, y, loc, x > width * 0.72)
    legs = []
    for hop in hops:
        if hop.km < 0.05:
            continue
        a, b = placed[hop.start.number], placed[hop.end.number]
        mx, my = round((a.x + b.x) / 2, 1), round((a.y + b.y) / 2, 1)
        impossible = limit is not None and hop.impossible(limit)
        legs.append(PlotLeg(a.x, a.y, b.x, b.y, mx, my, hop.km, impossible))
    return LocationPlot(width, height, tuple(placed.values()), tuple(legs))


@dataclass(frozen=True, slots=True)
class LocationRow:
    """A row of the panel's table: a use, and the hop that ends there (card-present only)."""

    location: CardLocation
    hop: Hop | None
    impossible: bool


@dataclass(frozen=True, slots=True)
class LocationPanel:
    """Everything the location panel (``_location_panel.html``) shows."""

    plot: LocationPlot | None
    rows: tuple[LocationRow, ...]
    limit: TravelLimit

    @property
    def has_card_not_present(self) -> bool:
        return any(not r.location.card_present for r in self.rows)


def location_panel(alert: AlertView, limit: TravelLimit) -> LocationPanel:
    """The location panel of ``alert``: its uses with coordinates, the travel between the
    card-present ones, marked against the impossible-travel ``limit``, and their plot."""
    locations = card_locations(alert)
    hops = travel_hops(locations)
    ending = {h.end.number: h for h in hops}
    rows = tuple(
        LocationRow(
            loc,
            ending.get(loc.number),
            loc.number in ending and ending[loc.number].impossible(limit),
        )
        for loc in locations
    )
    return LocationPanel(plot_locations(locations, hops, limit), rows, limit)
