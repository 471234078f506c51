"""Where card traffic happens: cities, countries, currencies and distances.

A small curated world is enough for believable traffic: cardholders live in the cities of a
Europe-centred issuer with a North American book, travel to popular destinations, and
fraudsters connect from the places card fraud is commonly routed through. Every city has a
UTC offset (standard time, no daylight saving) so a card's daily rhythm follows local time.

Traffic is generated in EUR-equivalent and priced in the merchant's currency with the
contract's exchange-rate table (``fraudwatch.vocabulary``), the one the detector converts back
with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fraudwatch.vocabulary import EXCHANGE_RATES


@dataclass(frozen=True, slots=True)
class Country:
    """A country's currency, the Faker locale for its names and its default UTC offset."""

    code: str
    currency: str
    locale: str
    utc_offset_min: int


@dataclass(frozen=True, slots=True)
class City:
    """A place where cards live (``home_weight``), travel to and fraudsters connect from."""

    name: str
    country: str
    latitude: float
    longitude: float
    radius_km: float
    home_weight: float
    travel_weight: float
    fraud_weight: float
    utc_offset_min: int


# Currencies whose card amounts carry no minor unit in practice.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW"})

_C = Country
COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in (
        _C("DE", "EUR", "de_DE", 60),
        _C("FR", "EUR", "fr_FR", 60),
        _C("GB", "GBP", "en_GB", 0),
        _C("ES", "EUR", "es_ES", 60),
        _C("IT", "EUR", "it_IT", 60),
        _C("NL", "EUR", "nl_NL", 60),
        _C("BE", "EUR", "nl_BE", 60),
        _C("AT", "EUR", "de_AT", 60),
        _C("CH", "CHF", "de_CH", 60),
        _C("IE", "EUR", "en_IE", 0),
        _C("PT", "EUR", "pt_PT", 0),
        _C("SE", "SEK", "sv_SE", 60),
        _C("NO", "NOK", "no_NO", 60),
        _C("DK", "DKK", "da_DK", 60),
        _C("FI", "EUR", "fi_FI", 120),
        _C("GR", "EUR", "el_GR", 120),
        _C("PL", "PLN", "pl_PL", 60),
        _C("CZ", "CZK", "cs_CZ", 60),
        _C("HU", "HUF", "hu_HU", 60),
        _C("US", "USD", "en_US", -300),
        _C("CA", "CAD", "en_CA", -300),
        _C("MX", "MXN", "es_MX", -360),
        _C("BR", "BRL", "pt_BR", -180),
        _C("JP", "JPY", "ja_JP", 540),
        _C("CN", "CNY", "zh_CN", 480),
        _C("IN", "INR", "en_IN", 330),
        _C("KR", "KRW", "ko_KR", 540),
        _C("SG", "SGD", "en_US", 480),
        _C("HK", "HKD", "zh_TW", 480),
        _C("AU", "AUD", "en_AU", 600),
        _C("NZ", "NZD", "en_NZ", 720),
        _C("ZA", "ZAR", "zu_ZA", 120),
        _C("TR", "TRY", "tr_TR", 180),
        _C("AE", "AED", "ar_AE", 240),
        _C("RU", "RUB", "ru_RU", 180),
        _C("NG", "NGN", "en_NG", 60),
    )
}


def _city(
    name: str,
    country: str,
    lat: float,
    lon: float,
    home: float = 0.0,
    travel: float = 0.0,
    fraud: float = 0.0,
    radius_km: float = 12.0,
    utc_offset_min: int | None = None,
) -> City:
    offset = COUNTRIES[country].utc_offset_min if utc_offset_min is None else utc_offset_min
    return City(name, country, lat, lon, radius_km, home, travel, fraud, offset)


CITIES: tuple[City, ...] = (
    # Home markets of the portfolio (home weight ~ share of cardholders, in %).
    _city("Berlin", "DE", 52.520, 13.405, home=4.0, travel=1.5, radius_km=15),
    _city("Hamburg", "DE", 53.551, 9.994, home=2.5, travel=0.5),
    _city("Munich", "DE", 48.137, 11.575, home=2.5, travel=1.0),
    _city("Cologne", "DE", 50.938, 6.960, home=2.0, travel=0.4),
    _city("Frankfurt", "DE", 50.110, 8.682, home=1.5, travel=0.4),
    _city("Stuttgart", "DE", 48.776, 9.183, home=1.2),
    _city("Düsseldorf", "DE", 51.228, 6.774, home=1.2),
    _city("Leipzig", "DE", 51.340, 12.375, home=0.8),
    _city("Paris", "FR", 48.857, 2.352, home=5.0, travel=4.0, radius_km=15),
    _city("Lyon", "FR", 45.764, 4.836, home=1.5, travel=0.5),
    _city("Marseille", "FR", 43.296, 5.370, home=1.5, travel=0.5),
    _city("Toulouse", "FR", 43.605, 1.444, home=1.0),
    _city("Bordeaux", "FR", 44.838, -0.579, home=0.8, travel=0.4),
    _city("Lille", "FR", 50.629, 3.057, home=0.8),
    _city("Nice", "FR", 43.710, 7.262, home=0.7, travel=1.5),
    _city("London", "GB", 51.507, -0.128, home=5.0, travel=4.0, fraud=0.5, radius_km=18),
    _city("Manchester", "GB", 53.481, -2.243, home=1.5, travel=0.3),
    _city("Birmingham", "GB", 52.486, -1.890, home=1.5),
    _city("Glasgow", "GB", 55.864, -4.252, home=0.8),
    _city("Edinburgh", "GB", 55.953, -3.188, home=0.7, travel=1.0),
    _city("Bristol", "GB", 51.455, -2.588, home=0.7),
    _city("Leeds", "GB", 53.801, -1.549, home=0.8),
    _city("Madrid", "ES", 40.417, -3.704, home=3.0, travel=2.0, radius_km=15),
    _city("Barcelona", "ES", 41.385, 2.173, home=2.5, travel=3.5),
    _city("Valencia", "ES", 39.470, -0.376, home=1.0, travel=1.0),
    _city("Seville", "ES", 37.389, -5.984, home=0.8, travel=1.0),
    _city("Bilbao", "ES", 43.263, -2.935, home=0.5),
    _city("Palma", "ES", 39.570, 2.650, travel=1.5, radius_km=8),
    _city("Rome", "IT", 41.903, 12.496, home=2.5, travel=3.5, radius_km=15),
    _city("Milan", "IT", 45.464, 9.190, home=2.5, travel=1.5),
    _city("Naples", "IT", 40.852, 14.268, home=1.0, travel=0.5),
    _city("Turin", "IT", 45.070, 7.687, home=1.0),
    _city("Florence", "IT", 43.770, 11.256, home=0.6, travel=1.5),
    _city("Bologna", "IT", 44.495, 11.343, home=0.6),
    _city("Amsterdam", "NL", 52.368, 4.904, home=2.0, travel=2.5),
    _city("Rotterdam", "NL", 51.924, 4.478, home=1.2),
    _city("Utrecht", "NL", 52.091, 5.122, home=0.8),
    _city("The Hague", "NL", 52.070, 4.300, home=0.8),
    _city("Brussels", "BE", 50.850, 4.352, home=1.2, travel=0.8),
    _city("Antwerp", "BE", 51.219, 4.402, home=0.8),
    _city("Vienna", "AT", 48.208, 16.374, home=1.5, travel=1.5),
    _city("Graz", "AT", 47.071, 15.439, home=0.4),
    _city("Zurich", "CH", 47.377, 8.541, home=1.0, travel=0.8),
    _city("Geneva", "CH", 46.204, 6.143, home=0.6, travel=0.5),
    _city("Dublin", "IE", 53.350, -6.260, home=1.2, travel=1.0),
    _city("Lisbon", "PT", 38.722, -9.139, home=1.2, travel=2.0),
    _city("Porto", "PT", 41.158, -8.629, home=0.6, travel=0.8),
    _city("Stockholm", "SE", 59.329, 18.069, home=1.2, travel=0.6),
    _city("Gothenburg", "SE", 57.709, 11.975, home=0.5),
    _city("Oslo", "NO", 59.914, 10.752, home=0.8, travel=0.4),
    _city("Copenhagen", "DK", 55.676, 12.568, home=0.9, travel=0.8),
    _city("Helsinki", "FI", 60.170, 24.938, home=0.7, travel=0.3),
    _city("Athens", "GR", 37.984, 23.728, home=1.0, travel=2.0),
    _city("Warsaw", "PL", 52.230, 21.012, home=1.5, travel=0.5),
    _city("Krakow", "PL", 50.065, 19.945, home=0.7, travel=1.0),
    _city("Prague", "CZ", 50.076, 14.438, home=1.0, travel=2.0),
    _city("Budapest", "HU", 47.498, 19.040, home=0.8, travel=1.2),
    _city("New York", "US", 40.713, -74.006, home=3.0, travel=3.0, fraud=0.5, radius_km=20),
    _city("Los Angeles", "US", 34.052, -118.244, 2.0, 1.0, 0.5, 25, -480),
    _city("Chicago", "US", 41.878, -87.630, 1.5, 0.5, 0.0, 18, -360),
    _city("Houston", "US", 29.760, -95.370, 1.0, 0.2, 0.0, 20, -360),
    _city("Miami", "US", 25.762, -80.192, home=1.0, travel=1.5, radius_km=15),
    _city("San Francisco", "US", 37.775, -122.419, 1.0, 1.0, 0.0, 12, -480),
    _city("Boston", "US", 42.360, -71.059, home=0.8, travel=0.5),
    _city("Seattle", "US", 47.606, -122.332, 0.7, 0.3, 0.0, 12, -480),
    _city("Toronto", "CA", 43.653, -79.383, home=1.2, travel=0.5, radius_km=18),
    _city("Montreal", "CA", 45.502, -73.567, home=0.7, travel=0.5),
    _city("Vancouver", "CA", 49.283, -123.121, 0.6, 0.5, 0.0, 12, -480),
    # Travel destinations and places fraud is commonly routed through.
    _city("Mexico City", "MX", 19.433, -99.133, travel=0.5, fraud=1.0, radius_km=20),
    _city("Cancún", "MX", 21.162, -86.851, travel=1.5, radius_km=10),
    _city("São Paulo", "BR", -23.551, -46.633, travel=0.3, fraud=1.5, radius_km=20),
    _city("Rio de Janeiro", "BR", -22.907, -43.173, travel=0.8, fraud=0.5, radius_km=15),
    _city("Tokyo", "JP", 35.676, 139.650, travel=1.5, radius_km=20),
    _city("Osaka", "JP", 34.694, 135.502, travel=0.5),
    _city("Shanghai", "CN", 31.230, 121.474, travel=0.4, fraud=1.0, radius_km=20),
    _city("Beijing", "CN", 39.904, 116.407, travel=0.4, fraud=0.5, radius_km=20),
    _city("Mumbai", "IN", 19.076, 72.878, travel=0.3, fraud=1.0, radius_km=18),
    _city("Delhi", "IN", 28.704, 77.102, travel=0.3, fraud=1.0, radius_km=20),
    _city("Seoul", "KR", 37.567, 126.978, travel=0.5, fraud=0.3, radius_km=18),
    _city("Singapore", "SG", 1.352, 103.820, travel=1.0, fraud=0.3),
    _city("Hong Kong", "HK", 22.319, 114.169, travel=0.8, fraud=0.5),
    _city("Sydney", "AU", -33.869, 151.209, travel=0.8, radius_km=18),
    _city("Melbourne", "AU", -37.814, 144.963, travel=0.4, radius_km=18),
    _city("Auckland", "NZ", -36.848, 174.763, travel=0.3),
    _city("Cape Town", "ZA", -33.925, 18.424, travel=0.8, fraud=0.3),
    _city("Johannesburg", "ZA", -26.204, 28.047, travel=0.2, fraud=1.0, radius_km=18),
    _city("Istanbul", "TR", 41.008, 28.978, travel=1.5, fraud=1.5, radius_km=20),
    _city("Antalya", "TR", 36.897, 30.713, travel=1.5, radius_km=10),
    _city("Dubai", "AE", 25.205, 55.271, travel=2.0, fraud=0.8, radius_km=18),
    _city("Moscow", "RU", 55.756, 37.617, travel=0.2, fraud=2.0, radius_km=20),
    _city("Saint Petersburg", "RU", 59.931, 30.360, travel=0.2, fraud=1.0, radius_km=15),
    _city("Lagos", "NG", 6.524, 3.379, fraud=3.0, radius_km=20),
    _city("Abuja", "NG", 9.076, 7.399, fraud=0.5),
)


def offset_km(lat: float, lon: float, north_km: float, east_km: float) -> tuple[float, float]:
    """The point ``north_km`` north and ``east_km`` east of (lat, lon): fine for city scale."""
    dlat = north_km / 111.195
    dlon = east_km / (111.195 * max(0.01, math.cos(math.radians(lat))))
    return max(-89.9, min(89.9, lat + dlat)), ((lon + dlon + 180.0) % 360.0) - 180.0


def minor_units(currency: str) -> int:
    """How many decimals a card amount in ``currency`` carries."""
    return 0 if currency in ZERO_DECIMAL_CURRENCIES else 2


def units_per_eur(currency: str) -> float:
    """Units of ``currency`` per 1 EUR, from the contract's table (KeyError if it has no rate)."""
    return EXCHANGE_RATES["EUR"] / EXCHANGE_RATES[currency]


def cash_unit(currency: str) -> float:
    """The note size ATM withdrawals are multiples of (10 EUR-ish in local money)."""
    rate = units_per_eur(currency)
    return 10.0 * 10.0 ** max(0, round(math.log10(rate)))
