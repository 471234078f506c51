"""The command line without a broker: options, determinism, files, errors and exit codes."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from fraudwatch.cards import luhn_valid
from fraudwatch.contract import parse_label, parse_transaction
from producer.cli import main, parse_duration, parse_speed, parse_start
from tests.factories import make_pan, make_txn

START = "2026-11-25T00:00:00Z"
START_MS = 1_795_564_800_000


def _generate(tmp_path: Path, name: str, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        [
            "generate", "--no-kafka", "--rate", "max", "--cards", "300", "--merchants", "120",
            "--seed", "42", "--start", START,
            "--out", str(tmp_path / f"{name}.jsonl"),
            "--labels-out", str(tmp_path / f"{name}.labels"),
            *args,
        ],
    )  # fmt: skip


def test_same_seed_and_start_write_byte_identical_records_and_labels(tmp_path: Path) -> None:
    args = ("--count", "20000", "--fraud-ratio", "0.03", "--bad-ratio", "0.01")
    first, second = _generate(tmp_path, "a", *args), _generate(tmp_path, "b", *args)
    assert first.exit_code == second.exit_code == 0, first.output
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.labels").read_bytes() == (tmp_path / "b.labels").read_bytes()
    assert len((tmp_path / "a.jsonl").read_bytes().splitlines()) == 20000


def test_labels_list_every_fraudulent_and_malformed_record_without_kafka_positions(
    tmp_path: Path,
) -> None:
    result = _generate(tmp_path, "a", "--count", "20000", "--fraud-ratio", "0.03",
                       "--bad-ratio", "0.01")  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = [orjson.loads(x) for x in (tmp_path / "a.labels").read_bytes().splitlines()]
    records = (tmp_path / "a.jsonl").read_bytes().splitlines()
    assert {tuple(label) for label in labels} == {
        ("transaction_id", "account_id", "story_id", "scenario", "partition", "offset")
    }
    assert all(label["partition"] is None and label["offset"] is None for label in labels)
    labelled = {label["transaction_id"] for label in labels}
    valid_unlabelled = 0
    for line in records:
        try:
            txn = parse_transaction(line)
        except ValueError:
            continue  # malformed: labelled by id, checked below
        if txn.transaction_id not in labelled:
            valid_unlabelled += 1
    malformed = [x for x in labels if x["scenario"] == "malformed"]
    assert len(records) - valid_unlabelled == len(labels)
    assert 100 < len(malformed) < 300
    assert "by scenario: genuine" in result.output


def test_days_stops_at_the_end_of_the_simulated_period(tmp_path: Path) -> None:
    result = _generate(tmp_path, "a", "--days", "1")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines()
    last = parse_transaction(lines[-1]).timestamp.timestamp() * 1000
    assert START_MS + 20 * 3_600_000 < last < START_MS + 86_400_000
    assert "stopped (days)" in result.output


def test_count_zero_sends_nothing(tmp_path: Path) -> None:
    result = _generate(tmp_path, "a", "--count", "0")
    assert result.exit_code == 0
    assert (tmp_path / "a.jsonl").read_bytes() == b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "fast"], "--rate must be a positive number or 'max'"),
        (["--rate", "0"], "--rate must be a positive number"),
        (["--duration", "soon"], "is not a duration"),
        (["--start", "yesterday"], "is not a time"),
        (["--clock", "wall", "--rate", "max"], "--clock wall needs a numeric --rate"),
        (["--fraud-ratio", "0.5", "--bad-ratio", "0.45"], "leave genuine traffic"),
        (["--cards", "3"], "--cards"),
        (["--amount-scale", "0"], "--amount-scale"),
        (["--chargeback-coverage", "0.5"], "--chargeback-coverage take effect only with"),
        (["--chargebacks-out", "x", "--chargeback-delay-days", "5"], "is not MEDIAN,P95"),
        (["--chargebacks-out", "x", "--chargeback-delay-days", "9,3"], "0 < median < p95"),
        (["--send-chargebacks", "--chargeback-delay-days", "5,200"], "<= 120 days"),
    ],
)
def test_bad_options_are_refused_with_a_message_and_exit_code_2(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["generate", "--no-kafka", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_an_unreachable_broker_fails_clearly_with_exit_code_2(tmp_path: Path) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        ["generate", "--bootstrap-servers", "127.0.0.1:1", "--cards", "50", "--merchants", "50",
         "--count", "10"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "Kafka is not reachable at 127.0.0.1:1" in result.output
    assert "make up" in result.output
    assert time.monotonic() - started < 15


def test_replay_refuses_an_invalid_file_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(orjson.dumps(make_txn()) + b"\n" + orjson.dumps(make_txn(amount=-1)) + b"\n")
    result = CliRunner().invoke(main, ["replay", "--no-kafka", str(path)])
    assert result.exit_code == 1
    assert "line 2: invalid_transaction: amount" in result.output
    assert "nothing was sent" in result.output


def test_replay_skip_invalid_sends_the_rest_and_lists_what_it_skipped(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"{oops\n" + orjson.dumps(make_txn()) + b"\n")
    result = CliRunner().invoke(main, ["replay", "--no-kafka", "--skip-invalid", str(path)])
    assert result.exit_code == 0, result.output
    assert "sent 1 records" in result.output
    assert "line 1: invalid_json" in result.output


def test_replay_raw_cannot_be_sorted(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"x\n")
    result = CliRunner().invoke(main, ["replay", "--no-kafka", "--raw", "--sort", str(path)])
    assert result.exit_code == 2
    assert "cannot be combined" in result.output


def test_duration_speed_and_start_parsers() -> None:
    assert [parse_duration(x) for x in ("90", "30s", "5m", "2h", "1d")] == [
        90, 30, 300, 7200, 86400
    ]  # fmt: skip
    assert parse_speed("max", "--speed") is None
    assert parse_speed("2.5", "--speed") == 2.5
    assert parse_start(START) == START_MS
    assert parse_start("2026-11-25T01:00:00+01:00") == START_MS
    assert parse_start("2026-11-25T00:00:00") == START_MS  # no offset: UTC
    assert parse_start("2026-11-25T00:00:00.123Z") == START_MS + 123  # exact milliseconds


@pytest.mark.parametrize(("speed", "seconds"), [("max", 0.0), ("20", 0.5)])
def test_replay_speed_follows_event_time_scaled_by_the_speed(
    tmp_path: Path, speed: str, seconds: float
) -> None:
    path = tmp_path / "ten-seconds.jsonl"
    lines = [
        orjson.dumps(make_txn(transaction_id=f"tx-{i}", timestamp=f"2026-11-25T10:00:{i:02d}Z"))
        for i in range(11)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    started = time.monotonic()
    result = CliRunner().invoke(main, ["replay", "--no-kafka", "--speed", speed, str(path)])
    assert result.exit_code == 0, result.output
    assert "sent 11 records" in result.output
    assert time.monotonic() - started == pytest.approx(seconds, abs=0.25)


def test_scenario_profile_shifted_changes_the_stories_but_not_the_genuine_population(
    tmp_path: Path,
) -> None:
    args = ("--count", "20000", "--fraud-ratio", "0.03")
    default = _generate(tmp_path, "d", *args)
    explicit = _generate(tmp_path, "e", *args, "--scenario-profile", "default")
    shifted = _generate(tmp_path, "s", *args, "--scenario-profile", "shifted")
    assert default.exit_code == explicit.exit_code == shifted.exit_code == 0, shifted.output
    assert (tmp_path / "d.jsonl").read_bytes() == (tmp_path / "e.jsonl").read_bytes()
    assert (tmp_path / "d.labels").read_bytes() != (tmp_path / "s.labels").read_bytes()
    cards = {
        orjson.loads(line)["account_id"]
        for line in (tmp_path / "d.jsonl").read_bytes().splitlines()
    }
    shifted_cards = {
        orjson.loads(line)["account_id"]
        for line in (tmp_path / "s.jsonl").read_bytes().splitlines()
    }
    assert len(cards & shifted_cards) > 0.9 * len(cards)  # the same portfolio


def test_scenario_profile_choices_are_the_producers_profiles(tmp_path: Path) -> None:
    from producer.scenarios import PROFILES

    option = next(p for p in main.commands["generate"].params if p.name == "scenario_profile")
    assert list(option.type.choices) == list(PROFILES)
    result = _generate(tmp_path, "x", "--count", "10", "--scenario-profile", "easy")
    assert result.exit_code == 2
    assert "'easy' is not one of 'default', 'shifted'" in result.output


def test_chargebacks_without_reissue_leave_the_transactions_and_ground_truth_byte_identical(
    tmp_path: Path,
) -> None:
    args = ("--count", "20000", "--fraud-ratio", "0.03", "--bad-ratio", "0.01")
    plain = _generate(tmp_path, "plain", *args)
    with_chargebacks = _generate(
        tmp_path, "cb", *args, "--send-chargebacks", "--chargebacks-out",
        str(tmp_path / "cb.chargebacks"), "--false-dispute-rate", "0.01", "--no-reissue",
    )  # fmt: skip
    assert plain.exit_code == with_chargebacks.exit_code == 0, with_chargebacks.output
    assert (tmp_path / "plain.jsonl").read_bytes() == (tmp_path / "cb.jsonl").read_bytes()
    assert (tmp_path / "plain.labels").read_bytes() == (tmp_path / "cb.labels").read_bytes()
    assert "sent 20,000 records" in with_chargebacks.output
    lines = (tmp_path / "cb.chargebacks").read_bytes().splitlines()
    labels = [parse_label(line) for line in lines]
    assert len(labels) > 300
    assert [x.reported_at for x in labels] == sorted(x.reported_at for x in labels)
    assert {x.label for x in labels} == {"fraud", "genuine"}
    assert "reported after the end of the run were not sent" in with_chargebacks.output


def test_a_disputed_card_is_reissued_for_the_holder_but_not_for_the_fraudster(
    tmp_path: Path,
) -> None:
    args = ("--count", "30000", "--cards", "300", "--fraud-ratio", "0.05")
    plain = _generate(tmp_path, "plain", *args)
    cb = _generate(
        tmp_path, "cb", *args, "--chargebacks-out", str(tmp_path / "cb.chargebacks"),
        "--chargeback-delay-days", "0.5,2",
    )  # fmt: skip
    assert plain.exit_code == cb.exit_code == 0, cb.output
    before = [json.loads(x) for x in (tmp_path / "plain.jsonl").read_bytes().splitlines()]
    after = [json.loads(x) for x in (tmp_path / "cb.jsonl").read_bytes().splitlines()]
    assert len(before) == len(after)
    fraud = {
        json.loads(x)["transaction_id"] for x in (tmp_path / "cb.labels").read_bytes().splitlines()
    }
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed, "some disputed cards must have been reissued"
    for a, b in changed:
        assert a["transaction_id"] not in fraud  # the fraudster keeps the stolen number
        assert {k: v for k, v in a.items() if k != "card_number"} == {
            k: v for k, v in b.items() if k != "card_number"
        }
        assert b["card_number"][:6] == a["card_number"][:6]
        assert luhn_valid(b["card_number"])
    reported = {}
    for lab in (parse_label(x) for x in (tmp_path / "cb.chargebacks").read_bytes().splitlines()):
        if lab.label == "fraud" and lab.card_number is not None:
            ts = lab.reported_at
            reported[lab.card_number] = min(ts, reported.get(lab.card_number, ts))
    for a, _ in changed:  # only after the dispute was reported
        assert a["card_number"] in reported
        assert a["timestamp"] >= reported[a["card_number"]].isoformat()[:19]


def test_the_same_seed_gives_byte_identical_chargebacks(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = _generate(tmp_path, name, "--count", "10000", "--fraud-ratio", "0.03",
                           "--chargebacks-out", str(tmp_path / f"{name}.chargebacks"))  # fmt: skip
        assert result.exit_code == 0, result.output
    first = (tmp_path / "a.chargebacks").read_bytes()
    assert first == (tmp_path / "b.chargebacks").read_bytes()
    assert first


def test_amount_scale_makes_the_same_traffic_with_amounts_six_times_larger(
    tmp_path: Path,
) -> None:
    args = ("--count", "5000", "--fraud-ratio", "0.03")
    assert _generate(tmp_path, "one", *args).exit_code == 0
    result = _generate(tmp_path, "six", *args, "--amount-scale", "6")
    assert result.exit_code == 0, result.output
    one = [orjson.loads(x) for x in (tmp_path / "one.jsonl").read_bytes().splitlines()]
    six = [orjson.loads(x) for x in (tmp_path / "six.jsonl").read_bytes().splitlines()]
    assert [t["transaction_id"] for t in one] == [t["transaction_id"] for t in six]
    ratios = [b["amount"] / a["amount"] for a, b in zip(one, six, strict=True) if a["amount"]]
    assert statistics.median(ratios) == pytest.approx(6.0, rel=0.02)


def _label_line(i: int, **overrides: object) -> bytes:
    label = {
        "transaction_id": f"tx-{i}", "card_number": make_pan(i), "merchant_id": "m-1",
        "timestamp": "2026-11-25T10:00:00Z", "amount": 12.5, "currency": "EUR",
        "label": "fraud", "reported_at": f"2026-11-30T10:00:{i:02d}Z", "source": "chargeback",
    }  # fmt: skip
    label.update(overrides)
    return orjson.dumps({k: v for k, v in label.items() if v is not None})


def test_labels_refuses_an_invalid_file_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "chargebacks.jsonl"
    lines = [
        _label_line(1),
        _label_line(2, label="maybe"),
        _label_line(3, card_token="ab" * 16),  # a PAN and a token: which card?
        _label_line(4, card_number="4111111111111112"),
        b"{",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(main, ["labels", "--no-kafka", str(path)])
    assert result.exit_code == 1
    assert "4 line(s) are not valid v1 fraud labels; nothing was sent" in result.output
    assert "line 2: invalid_label: label" in result.output
    assert "line 3: invalid_label: exactly one of card_number or card_token" in result.output
    assert "line 4: luhn" in result.output
    assert "line 5: invalid_json" in result.output


def test_labels_skip_invalid_sends_the_rest_and_lists_what_it_skipped(tmp_path: Path) -> None:
    path = tmp_path / "chargebacks.jsonl"
    path.write_bytes(b"\n".join([_label_line(1), _label_line(2, amount=-1), _label_line(3)]))
    result = CliRunner().invoke(main, ["labels", "--no-kafka", "--skip-invalid", str(path)])
    assert result.exit_code == 0, result.output
    assert "sent 2 records" in result.output
    assert "skipped 1 invalid line(s)" in result.output
    assert "line 2: invalid_label: amount" in result.output
    assert "by scenario" not in result.output  # a labels file has no scenarios


def test_labels_paces_by_reported_at_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "chargebacks.jsonl"
    path.write_bytes(b"\n".join(_label_line(i) for i in range(11)))  # 10 s of reported_at
    started = time.monotonic()
    result = CliRunner().invoke(main, ["labels", "--no-kafka", "--speed", "20", str(path)])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started == pytest.approx(0.5, abs=0.25)
