"""Distances and a tile-free location plot for the alert detail page.

No tile server is reachable from an analyst's network in many banks, so the detail page draws
the card's locations as an SVG scatter (equirectangular, scaled to the points' bounding box)
with the great-circle distance on each leg.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fraudwatch.alert_store import AlertView
from fraudwatch.geo import haversine_km


@dataclass(frozen=True, slots=True)
class PlotPoint:
    x: float
    y: float
    label: str
    lat: float
    lon: float
    current: bool
    label_left: bool = False  # near the right edge: put the label on the left of the dot


@dataclass(frozen=True, slots=True)
class PlotLeg:
    x1: float
    y1: float
    x2: float
    y2: float
    mx: float
    my: float
    km: float


@dataclass(frozen=True, slots=True)
class LocationPlot:
    width: int
    height: int
    points: tuple[PlotPoint, ...]
    legs: tuple[PlotLeg, ...]


def plot_locations(
    points: Sequence[tuple[float, float, str, bool]], width: int = 520, height: int = 300
) -> LocationPlot | None:
    """Lay out ``(lat, lon, label, is_current)`` points (in time order) on a ``width`` x
    ``height`` canvas with a margin, keeping the aspect ratio of an equirectangular map."""
    if not points:
        return None
    margin = 40.0
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    mid_lat = math.radians((max(lats) + min(lats)) / 2)
    xscale = max(math.cos(mid_lat), 0.1)
    span_x = max((max(lons) - min(lons)) * xscale, 1e-3)
    span_y = max(max(lats) - min(lats), 1e-3)
    scale = min((width - 2 * margin) / span_x, (height - 2 * margin) / span_y)
    used_w = span_x * scale
    used_h = span_y * scale
    off_x = (width - used_w) / 2
    off_y = (height - used_h) / 2

    def project(lat: float, lon: float) -> tuple[float, float]:
        x = off_x + (lon - min(lons)) * xscale * scale
        y = off_y + (max(lats) - lat) * scale
        return round(x, 1), round(y, 1)

    placed = []
    for lat, lon, label, current in points:
        x, y = project(lat, lon)
        placed.append(PlotPoint(x, y, label, lat, lon, current, x > width * 0.72))
    legs = []
    for a, b in itertools.pairwise(placed):
        km = haversine_km(a.lat, a.lon, b.lat, b.lon)
        if km < 0.05:
            continue
        legs.append(
            PlotLeg(a.x, a.y, b.x, b.y, round((a.x + b.x) / 2, 1), round((a.y + b.y) / 2, 1), km)
        )
    return LocationPlot(width, height, tuple(placed), tuple(legs))


@dataclass(frozen=True, slots=True)
class Hop:
    """The move between two consecutive card locations: distance and implied speed."""

    from_label: str
    to_label: str
    km: float
    hours: float | None

    @property
    def kmh(self) -> float | None:
        if self.hours is None or self.hours <= 0:
            return None
        return self.km / self.hours


def travel_hops(alert: AlertView) -> list[Hop]:
    """Distances between the evidence transactions and the alerted one, in time order."""
    points: list[tuple[datetime | None, str, float, float]] = []
    for t in alert.evidence_txns:
        if t.latitude is not None and t.longitude is not None:
            when = t.timestamp.strftime("%H:%M") if t.timestamp else "?"
            label = f"{when} {t.country}" + (
                " (this)" if t.transaction_id == alert.transaction_id else ""
            )
            points.append((t.timestamp, label, t.latitude, t.longitude))
    known = any(t.transaction_id == alert.transaction_id for t in alert.evidence_txns)
    if alert.latitude is not None and alert.longitude is not None and not known:
        label = f"{alert.timestamp.strftime('%H:%M')} {alert.country} (this)"
        points.append((alert.timestamp, label, alert.latitude, alert.longitude))
    points.sort(key=lambda p: p[0] or datetime.fromtimestamp(0, UTC))
    hops = []
    for a, b in itertools.pairwise(points):
        hours = (b[0] - a[0]).total_seconds() / 3600 if a[0] and b[0] else None
        hops.append(Hop(a[1], b[1], haversine_km(a[2], a[3], b[2], b[3]), hours))
    return hops
