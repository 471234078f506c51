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
from webapp.templating import format_km

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
            return "billing or shipping address, not the card's location"
        return "channel not recorded"


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


# Label placement. Text widths are estimated from the character count, generously (DejaVu
# Sans, the widest of the page's fonts, averages about 0.6 em on digits and capitals), so an
# estimated box holds the drawn text. A halo (the labels' white stroke) adds a little.
MARKER_R = 8.0
LABEL_FONT = 11.5  # .map-label
KM_FONT = 12.0  # .map-km (bold)
CHAR_EM = 0.64
HALO = 2.0
LEADER_ROWS = 8  # rows of stacked places above and below a crowded marker


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box on the canvas: top-left corner, width and height."""

    x: float
    y: float
    w: float
    h: float

    def intersects(self, other: Box) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )

    def inside(self, width: float, height: float) -> bool:
        return (
            self.x >= 0 and self.y >= 0 and self.x + self.w <= width and self.y + self.h <= height
        )


@dataclass(frozen=True, slots=True)
class PlacedLabel:
    """A label's text, its box, where the template writes it (``text-anchor: start``,
    baseline at ``ty``) and, when it had to move away from its marker, a leader line."""

    text: str
    box: Box
    tx: float
    ty: float
    leader: tuple[float, float, float, float] | None = None


def text_box_size(text: str, font_px: float) -> tuple[float, float]:
    """The estimated width and height of ``text`` at ``font_px``, halo included."""
    return len(text) * CHAR_EM * font_px + 2 * HALO, font_px + 2 * HALO


class LabelSpace:
    """Greedy label placement: each label takes the first of its candidate places that stays
    on the canvas and clear of the markers and the labels placed before it."""

    def __init__(self, width: float, height: float, obstacles: Sequence[Box] = ()) -> None:
        self.width = width
        self.height = height
        self.taken: list[Box] = list(obstacles)

    def take(self, candidates: Sequence[Box]) -> Box | None:
        for box in candidates:
            if box.inside(self.width, self.height) and not any(
                box.intersects(t) for t in self.taken
            ):
                self.taken.append(box)
                return box
        return None


def _marker_label_places(x: float, y: float, w: float, h: float) -> list[tuple[Box, bool]]:
    """Places for a marker's label, best first, each with whether it needs a leader line:
    beside, above, below, diagonal, then stacked rows on either side further away."""
    gap = MARKER_R + 2
    diag = gap * 0.75
    places = [
        Box(x + gap, y - h / 2, w, h),
        Box(x - gap - w, y - h / 2, w, h),
        Box(x - w / 2, y - gap - h, w, h),
        Box(x - w / 2, y + gap, w, h),
        Box(x + diag, y - diag - h, w, h),
        Box(x + diag, y + diag, w, h),
        Box(x - diag - w, y - diag - h, w, h),
        Box(x - diag - w, y + diag, w, h),
    ]
    near = [(b, False) for b in places]
    far = []
    for row in range(1, LEADER_ROWS + 1):
        for dy in (-row * h, row * h):
            far.append((Box(x + gap + 8, y - h / 2 + dy, w, h), True))
            far.append((Box(x - gap - 8 - w, y - h / 2 + dy, w, h), True))
    return near + far


def _leader(x: float, y: float, box: Box) -> tuple[float, float, float, float]:
    """A line from the marker's edge at (x, y) to the nearest point of ``box``."""
    bx = min(max(x, box.x), box.x + box.w)
    by = min(max(y, box.y), box.y + box.h)
    dist = math.hypot(bx - x, by - y) or 1.0
    sx, sy = x + (bx - x) * MARKER_R / dist, y + (by - y) * MARKER_R / dist
    return round(sx, 1), round(sy, 1), round(bx, 1), round(by, 1)


def _place_marker_label(space: LabelSpace, x: float, y: float, text: str) -> PlacedLabel | None:
    w, h = text_box_size(text, LABEL_FONT)
    places = _marker_label_places(x, y, w, h)
    box = space.take([b for b, _ in places])
    if box is None:
        return None  # the numbered marker stays; the table holds the text
    needs_leader = next(lead for b, lead in places if b == box)
    return PlacedLabel(
        text,
        box,
        round(box.x + HALO, 1),
        round(box.y + HALO + LABEL_FONT * 0.8, 1),
        _leader(x, y, box) if needs_leader else None,
    )


def _place_leg_label(
    space: LabelSpace, x1: float, y1: float, x2: float, y2: float, text: str
) -> PlacedLabel | None:
    """A hop's distance near the middle of its leg, else along it, else not on the map."""
    w, h = text_box_size(text, KM_FONT)
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    nx, ny = -(y2 - y1) / length, (x2 - x1) / length  # unit normal
    off = h / 2 + 2
    places = []
    for t in (0.5, 0.4, 0.6, 0.3, 0.7):
        cx, cy = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t
        for side in (0.0, -1.0, 1.0):
            px, py = cx + nx * off * side, cy + ny * off * side
            places.append(Box(px - w / 2, py - h / 2, w, h))
    box = space.take(places)
    if box is None:
        return None
    return PlacedLabel(text, box, round(box.x + HALO, 1), round(box.y + HALO + KM_FONT * 0.8, 1))


@dataclass(frozen=True, slots=True)
class PlotPoint:
    x: float
    y: float
    location: CardLocation
    label: PlacedLabel | None = None  # None: no room; the marker's number leads to the table


@dataclass(frozen=True, slots=True)
class PlotLeg:
    x1: float
    y1: float
    x2: float
    y2: float
    km: float
    impossible: bool
    label: PlacedLabel | None = None  # the distance, None when it has no room on the map


@dataclass(frozen=True, slots=True)
class LocationPlot:
    width: int
    height: int
    points: tuple[PlotPoint, ...]
    legs: tuple[PlotLeg, ...]
    marker_r: float = MARKER_R

    def label_boxes(self) -> list[Box]:
        """Every text box drawn on the plot (markers' and legs' labels)."""
        labels = [p.label for p in self.points] + [g.label for g in self.legs]
        return [lab.box for lab in labels if lab is not None]


def plot_locations(
    locations: Sequence[CardLocation],
    hops: Sequence[Hop] = (),
    limit: TravelLimit | None = None,
    width: int = 520,
    height: int = 300,
) -> LocationPlot | None:
    """Lay out ``locations`` on a ``width`` x ``height`` canvas with a margin, keeping the
    aspect ratio of an equirectangular map, with a leg for each of ``hops``.

    Labels never overlap one another or a marker and stay on the canvas: the alerted use's
    label is placed first, then card-present ones, then the rest, each at the first free place
    next to its marker or, when markers crowd, stacked further away with a leader line; a
    label with no free place is left out (its numbered marker and the table remain). Then each
    leg's distance, near its middle if there is room.
    """
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

    at = {loc.number: project(loc.latitude, loc.longitude) for loc in locations}
    markers = [
        Box(x - MARKER_R - 1, y - MARKER_R - 1, 2 * MARKER_R + 2, 2 * MARKER_R + 2)
        for x, y in at.values()
    ]
    space = LabelSpace(width, height, markers)
    labels: dict[int, PlacedLabel | None] = {}
    for loc in sorted(locations, key=lambda c: (not c.current, not c.card_present, c.number)):
        labels[loc.number] = _place_marker_label(space, *at[loc.number], loc.label)
    legs = []
    for hop in hops:
        if hop.km < 0.05:
            continue
        (x1, y1), (x2, y2) = at[hop.start.number], at[hop.end.number]
        label = _place_leg_label(space, x1, y1, x2, y2, format_km(hop.km))
        impossible = limit is not None and hop.impossible(limit)
        legs.append(PlotLeg(x1, y1, x2, y2, hop.km, impossible, label))
    points = tuple(PlotPoint(*at[loc.number], loc, labels[loc.number]) for loc in locations)
    return LocationPlot(width, height, points, tuple(legs))


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
