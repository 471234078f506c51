import hmac

from hypothesis import given
from hypothesis import strategies as st

from fraudwatch.cards import CardTokenizer, contains_pan, luhn_check_digit, luhn_valid, mask_pan
from tests.factories import make_pan


def test_luhn_accepts_known_test_numbers_and_rejects_a_changed_digit() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("5555555555554444")
    assert not luhn_valid("4111111111111112")


def _luhn_by_the_book(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
def test_luhn_agrees_with_the_textbook_definition(digits: str) -> None:
    assert luhn_valid(digits) == _luhn_by_the_book(digits)


def test_luhn_refuses_anything_but_ascii_digits() -> None:
    # Arabic-Indic digits match a regex's \d; they are not a card number.
    assert not luhn_valid("\u0664\u0661\u0661\u0661" * 4)
    assert not luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("")


@given(st.text(alphabet="0123456789", min_size=11, max_size=18))
def test_luhn_check_digit_always_completes_a_valid_number(body: str) -> None:
    assert luhn_valid(body + luhn_check_digit(body))


def test_mask_shows_first6_last4_for_long_cards_and_last4_only_for_short_ones() -> None:
    assert mask_pan("4111111111111111") == "411111******1111"
    assert mask_pan("4111111111111111234") == "411111*********1234"
    assert mask_pan("123456789012") == "********9012"
    assert mask_pan("123456789012345") == "***********2345"


def test_token_is_keyed_stable_and_does_not_contain_the_pan() -> None:
    pan = make_pan(7)
    a, b = CardTokenizer("k1"), CardTokenizer("k2")
    assert a.token(pan) == a.token(pan)
    assert a.token(pan) != b.token(pan)
    assert pan not in a.token(pan)
    assert len(a.token(pan)) == 32


@given(
    key=st.text(min_size=1, max_size=200),  # beyond 64 bytes the key is hashed first
    pan=st.text(alphabet="0123456789", min_size=12, max_size=19),
)
def test_token_is_hmac_sha256_of_the_pan_under_the_key(key: str, pan: str) -> None:
    expected = hmac.digest(key.encode(), pan.encode(), "sha256").hex()[:32]
    assert CardTokenizer(key).token(pan) == expected


def test_missing_token_key_logs_a_loud_warning(caplog) -> None:
    from fraudwatch import cards

    cards._warned = False
    CardTokenizer(None)
    assert "FRAUD_TOKEN_KEY is not set" in caplog.text


def test_contains_pan_finds_luhn_valid_numbers_only() -> None:
    assert contains_pan(f"card={make_pan(3)} ok")
    assert not contains_pan("order 4111111111111112 and phone 0049301234567")
