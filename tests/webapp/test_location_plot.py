"""The detail page's location panel (pure, no services): travel only between card-present
uses, card-not-present places shown as addresses, the plot, and the rendered panel."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudwatch.alert_store import AlertView
from fraudwatch.geo import haversine_km
from tests.webapp.conftest import build_app
from webapp.location_plot import (
    CARD_NOT_PRESENT,
    CARD_PRESENT,
    Box,
    LocationPlot,
    TravelLimit,
    card_locations,
    location_panel,
    plot_locations,
    travel_hops,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
LIMIT = TravelLimit(max_speed_kmh=900.0, min_distance_km=100.0)
BERLIN = (52.52, 13.405)
PARIS = (48.857, 2.352)
NEW_YORK = (40.713, -74.006)
SYDNEY = (-33.869, 151.209)


def txn(
    n: int, minutes_before: float, place: tuple[float, float], country: str, channel: str
) -> dict[str, Any]:
    return {
        "transaction_id": f"t{n}",
        "timestamp": NOW - timedelta(minutes=minutes_before),
        "latitude": place[0],
        "longitude": place[1],
        "amount_base": 10.0,
        "country": country,
        "channel": channel,
    }


def make_alert(*evidence: dict[str, Any]) -> AlertView:
    """An alert whose transaction is the last of ``evidence`` (as the dataflow writes it)."""
    last = evidence[-1]
    return AlertView.from_doc(
        {
            "_id": "d" * 24,
            "timestamp": last["timestamp"],
            "transaction_id": last["transaction_id"],
            "latitude": last["latitude"],
            "longitude": last["longitude"],
            "country": last["country"],
            "channel": last["channel"],
            "card_masked": "411111******1111",
            "evidence_txns": list(evidence),
        }
    )


def test_an_alert_without_locations_has_no_travel_hops() -> None:
    alert = AlertView.from_doc(
        {"_id": "c" * 24, "timestamp": NOW, "card_masked": "411111******1111"}
    )
    assert card_locations(alert) == []
    assert travel_hops(card_locations(alert)) == []
    assert location_panel(alert, LIMIT).plot is None


def test_two_card_present_uses_give_distance_and_implied_speed() -> None:
    alert = make_alert(txn(1, 60, BERLIN, "DE", CARD_PRESENT), txn(2, 0, PARIS, "FR", CARD_PRESENT))
    hops = travel_hops(card_locations(alert))
    assert len(hops) == 1
    assert hops[0].km == pytest.approx(878, abs=3)
    assert hops[0].kmh == pytest.approx(878, abs=3)
    assert not hops[0].impossible(LIMIT)


def test_no_travel_speed_between_card_not_present_uses() -> None:
    # The failure of issue #14: online charges 20 min apart on three continents.
    alert = make_alert(
        txn(1, 40, BERLIN, "DE", CARD_NOT_PRESENT),
        txn(2, 20, NEW_YORK, "US", CARD_NOT_PRESENT),
        txn(3, 0, SYDNEY, "AU", CARD_NOT_PRESENT),
    )
    panel = location_panel(alert, LIMIT)
    assert travel_hops(card_locations(alert)) == []
    assert all(r.hop is None and not r.impossible for r in panel.rows)
    assert panel.plot is not None
    assert panel.plot.legs == ()
    assert all("not the card's location" in r.location.meaning for r in panel.rows)


def test_card_present_then_online_gives_no_hop() -> None:
    alert = make_alert(
        txn(1, 10, BERLIN, "DE", CARD_PRESENT), txn(2, 0, NEW_YORK, "US", CARD_NOT_PRESENT)
    )
    assert travel_hops(card_locations(alert)) == []


def test_card_present_uses_pair_across_card_not_present_ones_in_between() -> None:
    # CP -> CNP -> CNP -> CP: the online address says nothing about where the card is, so the
    # hop joins the two card-present uses, as the impossible-travel rule does.
    alert = make_alert(
        txn(1, 60, BERLIN, "DE", CARD_PRESENT),
        txn(2, 40, SYDNEY, "AU", CARD_NOT_PRESENT),
        txn(3, 20, NEW_YORK, "US", CARD_NOT_PRESENT),
        txn(4, 0, PARIS, "FR", CARD_PRESENT),
    )
    hops = travel_hops(card_locations(alert))
    assert [(h.start.number, h.end.number) for h in hops] == [(1, 4)]
    assert hops[0].km == pytest.approx(haversine_km(*BERLIN, *PARIS))
    panel = location_panel(alert, LIMIT)
    assert [r.hop is not None for r in panel.rows] == [False, False, False, True]


def test_impossible_travel_is_marked_against_the_rule_limit() -> None:
    alert = make_alert(txn(1, 30, BERLIN, "DE", CARD_PRESENT), txn(2, 0, PARIS, "FR", CARD_PRESENT))
    panel = location_panel(alert, LIMIT)
    assert panel.rows[1].impossible  # 878 km in 30 min: 1,756 km/h
    assert panel.plot is not None
    assert panel.plot.legs[0].impossible
    assert not location_panel(alert, TravelLimit(2000.0, 100.0)).rows[1].impossible
    # Below the rule's minimum distance, terminal geolocation noise: never impossible.
    assert not location_panel(alert, TravelLimit(900.0, 1000.0)).rows[1].impossible


def test_two_places_at_the_same_second_are_instant_travel() -> None:
    alert = make_alert(txn(1, 0, BERLIN, "DE", CARD_PRESENT), txn(2, 0, PARIS, "FR", CARD_PRESENT))
    hop = travel_hops(card_locations(alert))[0]
    assert hop.instant
    assert hop.impossible(LIMIT)


def test_a_use_without_a_channel_is_not_used_for_travel() -> None:
    first, second = txn(1, 60, BERLIN, "DE", CARD_PRESENT), txn(2, 0, PARIS, "FR", "")
    alert = make_alert(first, second)
    assert travel_hops(card_locations(alert)) == []
    assert "channel" in card_locations(alert)[1].meaning


def test_locations_are_numbered_in_time_order_and_the_alerted_one_is_current() -> None:
    alert = make_alert(
        txn(2, 10, PARIS, "FR", CARD_PRESENT),
        txn(1, 50, BERLIN, "DE", CARD_NOT_PRESENT),
        txn(3, 0, BERLIN, "DE", CARD_PRESENT),
    )
    locations = card_locations(alert)
    assert [(loc.number, loc.country, loc.current) for loc in locations] == [
        (1, "DE", False),
        (2, "FR", False),
        (3, "DE", True),
    ]
    assert locations[0].label == "08:10 DE (CNP)"


def test_location_plot_keeps_points_inside_the_canvas() -> None:
    alert = make_alert(
        txn(1, 600, BERLIN, "DE", CARD_PRESENT), txn(2, 0, NEW_YORK, "US", CARD_PRESENT)
    )
    locations = card_locations(alert)
    plot = plot_locations(locations, travel_hops(locations), LIMIT, 500, 300)
    assert plot is not None
    assert all(0 <= p.x <= 500 and 0 <= p.y <= 300 for p in plot.points)
    assert plot.legs[0].km == pytest.approx(haversine_km(*BERLIN, *NEW_YORK))


def render_panel(alert: AlertView) -> str:
    app = build_app("fraudwatch_render_only")  # no request, so MongoDB is never asked
    with app.app_context():
        template = app.jinja_env.get_template("_location_panel.html")
        return template.render(locations=location_panel(alert, LIMIT))


def test_the_panel_draws_card_not_present_places_hollow_and_without_speed() -> None:
    html = render_panel(
        make_alert(
            txn(1, 30, BERLIN, "DE", CARD_PRESENT),
            txn(2, 20, NEW_YORK, "US", CARD_NOT_PRESENT),
            txn(3, 0, PARIS, "FR", CARD_PRESENT),
        )
    )
    assert html.count('<circle class="not-present"') == 1  # the hollow marker
    assert "billing or shipping address, not the card&#39;s location" in html
    assert html.count('class="map-leg impossible"') == 1  # Berlin -> Paris in 30 min
    assert "1,755" in html  # its speed in km/h; none to or from New York
    assert 'class="map-point current"' in html
    rows = re.findall(r"<tr(?: class=\"([^\"]*)\")?>\s*<td", html)
    assert rows == ["", "not-present", "impossible"]


def test_the_hops_table_has_a_fixed_layout_that_fits_its_column() -> None:
    html = render_panel(
        make_alert(txn(1, 30, BERLIN, "DE", CARD_PRESENT), txn(2, 0, PARIS, "FR", CARD_PRESENT))
    )
    assert '<table class="hops">' in html
    cols = re.findall(r'<col(?: class="([^"]*)")?>', html)
    assert len(cols) == 6  # every <td> row has these six columns
    app = build_app("fraudwatch_render_only")
    assert app.static_folder is not None
    with open(f"{app.static_folder}/app.css") as f:
        css = f.read()
    rule = re.search(r"table\.hops \{([^}]*)\}", css)
    assert rule is not None
    assert "table-layout: fixed" in rule.group(1)
    assert "width: 100%" in rule.group(1)
    widths = [int(w) for w in re.findall(r"table\.hops col\.hop-\w+ \{ width: (\d+)px; \}", css)]
    # The location panel is about 460 px wide at a 1280 px viewport (docs/webapp.md): the
    # fixed columns leave at least 170 px for the wrapping "Use" column.
    assert len(widths) == 5
    assert sum(widths) <= 460 - 170


def cluster(n: int, *, channel: str = CARD_PRESENT) -> list[dict[str, Any]]:
    """``n`` uses within about 3 km of central Paris, five minutes apart."""
    return [
        txn(
            i,
            5 * (n - i),
            (PARIS[0] + 0.01 * ((i * 7) % 3 - 1), PARIS[1] + 0.013 * ((i * 5) % 4 - 1.5)),
            "FR",
            channel,
        )
        for i in range(1, n + 1)
    ]


def assert_labels_apart_and_on_the_canvas(plot: LocationPlot) -> None:
    boxes = plot.label_boxes()
    for a, b in itertools.combinations(boxes, 2):
        assert not a.intersects(b), (a, b)
    assert all(b.inside(plot.width, plot.height) for b in boxes)
    markers = [
        Box(p.x - plot.marker_r, p.y - plot.marker_r, 2 * plot.marker_r, 2 * plot.marker_r)
        for p in plot.points
    ]
    for label in (p.label for p in plot.points if p.label is not None):
        assert not any(label.box.intersects(m) for m in markers), label


def test_labels_of_eight_uses_within_a_few_km_do_not_overlap() -> None:
    alert = make_alert(*cluster(8))
    plot = location_panel(alert, LIMIT).plot
    assert plot is not None
    assert_labels_apart_and_on_the_canvas(plot)
    assert all(p.label is not None for p in plot.points)  # the canvas has room for all


def test_a_far_use_squeezes_the_cluster_and_its_labels_still_do_not_overlap() -> None:
    # One use in New York shrinks eight Paris uses to a few pixels: labels move away along
    # leader lines, and what finds no room is left to its numbered marker and the table.
    uses = [txn(0, 600, NEW_YORK, "US", CARD_PRESENT), *cluster(8)]
    alert = make_alert(*uses)
    plot = location_panel(alert, LIMIT).plot
    assert plot is not None
    assert_labels_apart_and_on_the_canvas(plot)
    current = next(p for p in plot.points if p.location.current)
    assert current.label is not None
    assert current.label.text == "09:00 FR"
    crowded = [p for p in plot.points if p.location.country == "FR"]
    assert sum(p.label is not None for p in crowded) >= 6
    assert any(p.label is not None and p.label.leader is not None for p in crowded)


@given(
    st.lists(
        st.tuples(
            st.floats(-60, 60),
            st.floats(-170, 170),
            st.sampled_from([CARD_PRESENT, CARD_NOT_PRESENT]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_labels_never_overlap_and_stay_on_the_canvas(
    uses: list[tuple[float, float, str]],
) -> None:
    alert = make_alert(
        *(
            txn(i, 10 * (len(uses) - i), (lat, lon), "DE", ch)
            for i, (lat, lon, ch) in enumerate(uses)
        )
    )
    plot = location_panel(alert, LIMIT).plot
    assert plot is not None
    assert_labels_apart_and_on_the_canvas(plot)


def test_the_rendered_map_writes_each_placed_label_once() -> None:
    html = render_panel(make_alert(*cluster(8)))
    for n in range(1, 9):
        assert html.count(f">{(NOW - timedelta(minutes=5 * (8 - n))):%H:%M} FR</text>") == 1
