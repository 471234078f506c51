"""Chargebacks: the delayed, incomplete truth about the generated fraud, as label contract v1.

A detector learns whether a transaction was fraud only when the cardholder disputes it, days
to weeks later, and not always. :class:`ChargebackStream` watches the transactions that are
sent and turns them into ``fraud-labels`` messages (``FraudLabel`` v1, ``source="chargeback"``,
``card_number`` = the PAN):

* a fraud victim (one card in one story) disputes with probability ``coverage``; then every
  fraudulent transaction of that victim is charged back, each ``delay`` after it happened,
  with one delay per victim (one dispute covers the whole statement). A 0.00 account
  verification moved no money and is never charged back;
* a genuine transaction is disputed as fraud with probability ``false_dispute_rate``
  (friendly fraud, a forgotten subscription); ``reversal_share`` of those disputes are later
  reversed by a ``genuine`` label for the same transaction, when the merchant's evidence wins
  (the card has been reissued all the same);
* delays are log-normal, given by their median and 95th percentile, and at most
  ``MAX_DELAY_DAYS`` (the card networks' window for a fraud dispute);
* with ``reissue`` (the default), the issuer blocks a card the moment a fraud dispute is
  reported and sends the holder a new one: the holder's later transactions carry a new card
  number (same BIN, account and habits). A fraudster's later attempts keep the old number.
  Without it, holders would go on using a card their bank knows is compromised, which no
  issuer allows and which would make every detector that learns from labels look worse.

The stream interleaves the chargebacks with the transactions in event-time order (a label
goes out when the simulated clock reaches its ``reported_at``) and writes every chargeback,
ordered by ``reported_at``, to a file; those reported after the end of the run are written but
never sent. All draws come from streams of their own (never the traffic's), so turning
chargebacks on or changing their options changes no transaction but the card numbers of
reissued cards (none with ``reissue=False``). Nothing here touches Kafka.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import IO, Any

import orjson

from fraudwatch.cards import luhn_check_digit
from fraudwatch.contract import format_ts, from_epoch_ms, parse_label
from fraudwatch.vocabulary import LabelSource, LabelValue
from producer.records import MALFORMED, Label, Record

DAY_MS = 86_400_000
MAX_DELAY_DAYS = 120.0  # Visa and Mastercard: a fraud dispute within 120 days
# A merchant has about 30 days to answer a dispute with evidence; the issuer then decides.
REVERSAL_DAYS = (15.0, 45.0)
LABEL_SOURCE: LabelSource = "chargeback"
_Z95 = NormalDist().inv_cdf(0.95)


class LogNormalDelay:
    """Reporting delays with a given median and 95th percentile, truncated at the maximum.

    Log-normal because a chargeback's delay is a product of waits (the statement cycle, the
    holder noticing, the call, the issuer's processing): skewed right with a long tail, and
    fixed by the two numbers people quote. Draws beyond ``max_days`` are drawn again.
    """

    def __init__(
        self, median_days: float, p95_days: float, max_days: float = MAX_DELAY_DAYS
    ) -> None:
        if not 0 < median_days < p95_days <= max_days:
            raise ValueError(
                f"chargeback delays need 0 < median < p95 <= {max_days:g} days, "
                f"not median {median_days:g} and p95 {p95_days:g}"
            )
        self.median_days = median_days
        self.p95_days = p95_days
        self.max_days = max_days
        self.mu = math.log(median_days * DAY_MS)
        self.sigma = math.log(p95_days / median_days) / _Z95
        self._max_ms = max_days * DAY_MS

    def quantile_days(self, q: float) -> float:
        """The ``q`` quantile of the untruncated distribution, in days."""
        return math.exp(self.mu + self.sigma * NormalDist().inv_cdf(q)) / DAY_MS

    def draw_ms(self, rng: random.Random) -> int:
        """One delay in milliseconds (at least 1 ms: a label always follows its transaction)."""
        while True:
            delay = math.exp(rng.gauss(self.mu, self.sigma))
            if delay <= self._max_ms:
                return max(1, int(delay))


@dataclass(frozen=True, slots=True)
class ChargebackConfig:
    """How chargebacks follow the generated transactions (``generate --chargeback-*``)."""

    seed: int
    delay_median_days: float = 5.0
    delay_p95_days: float = 30.0
    coverage: float = 0.85
    false_dispute_rate: float = 0.0005
    reversal_share: float = 0.5
    reissue: bool = True

    def __post_init__(self) -> None:
        LogNormalDelay(self.delay_median_days, self.delay_p95_days)  # validates the pair
        for name, value in (
            ("--chargeback-coverage", self.coverage),
            ("--false-dispute-rate", self.false_dispute_rate),
            ("--false-dispute-reversal", self.reversal_share),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value:g}")


@dataclass(slots=True)
class ChargebackCounts:
    """What the stream did: for the summary and for tests."""

    fraud_seen: int = 0  # fraudulent transactions sent
    fraud_reported: int = 0  # ... that got a chargeback
    false_disputes: int = 0
    reversals: int = 0
    emitted: int = 0  # handed to the sender (their reported_at came during the run)
    written: int = 0  # written to the file (all of them once finished)
    after_end: int = 0  # reported after the end of the run: file only


class ChargebackStream:
    """Chargebacks for the transactions sent, interleaved with them in event-time order.

    Wrap the transaction records with :meth:`interleave`, send what it yields, then call
    :meth:`finish` with the number of transactions sent. A transaction's chargebacks are
    decided when the sender asks for the record after it (proof that it was sent), or in
    :meth:`finish` for the last one, so no label ever points at a transaction that was not.
    """

    __slots__ = (
        "_delay",
        "_emit",
        "_genuine_left",
        "_handed_on",
        "_heap",
        "_reissued",
        "_rng",
        "_seq",
        "_unobserved",
        "_write",
        "config",
        "counts",
    )

    def __init__(
        self, config: ChargebackConfig, *, emit: bool = True, out: IO[bytes] | None = None
    ) -> None:
        """Set up the stream.

        Args:
            config: delays, coverage and false disputes.
            emit: yield chargebacks (``Record.chargeback``) for sending; otherwise only write.
            out: where every chargeback goes as a JSON line, ordered by ``reported_at``.
        """
        self.config = config
        self.counts = ChargebackCounts()
        self._emit = emit
        self._write = out.write if out is not None else None
        self._delay = LogNormalDelay(config.delay_median_days, config.delay_p95_days)
        # False disputes and reversals; victims draw from their own seeded generators.
        self._rng = random.Random(f"fraudwatch-chargebacks-{config.seed}")  # noqa: S311
        self._heap: list[tuple[int, int, bytes | None, bytes]] = []
        self._seq = 0
        self._genuine_left = self._next_false_dispute()
        self._unobserved: Record | None = None
        self._handed_on = 0  # records taken from the wrapped stream and handed on
        # Account key -> the card's reissues: (from event time, old number, new number).
        self._reissued: dict[bytes | None, list[tuple[int, str, str]]] = {}

    # --- the stream ---------------------------------------------------------------------
    def interleave(self, records: Iterator[Record]) -> Iterator[Record]:
        """``records`` with the chargebacks that fall due between them.

        A chargeback reported at or before a transaction's event time comes just before it.
        """
        heap = self._heap
        emit = self._emit
        counts = self.counts
        for record in records:
            previous = self._unobserved
            if previous is not None:
                self._unobserved = None  # the sender may stop at a chargeback below
                # Hot path: a genuine transaction that is not the next false dispute.
                if previous.label is None and self._genuine_left > 1:
                    self._genuine_left -= 1
                else:
                    self._observe(previous)
            if heap and heap[0][0] <= record.ts_ms:
                ts = record.ts_ms
                while heap and heap[0][0] <= ts:
                    reported, _, key, value = heapq.heappop(heap)
                    self._file(value)
                    if emit:
                        counts.emitted += 1
                        yield Record(reported, key, value, None, chargeback=True)
            sent = record
            if self._reissued and record.label is None and record.key in self._reissued:
                sent = self._new_card_number(record)
            self._handed_on += 1
            self._unobserved = sent
            yield sent
        # Asked for more after the last record: it was sent.
        if self._unobserved is not None:
            self._observe(self._unobserved)
            self._unobserved = None

    def finish(self, sent: int) -> ChargebackCounts:
        """Settle the last transaction and write the chargebacks still pending.

        Args:
            sent: transactions (and malformed records) the sender really sent; when it is one
                short of what was handed on, the last one was not sent and gets no chargeback.
        """
        if self._unobserved is not None and sent >= self._handed_on:
            self._observe(self._unobserved)
        self._unobserved = None
        while self._heap:
            _, _, _, value = heapq.heappop(self._heap)
            self._file(value)
            self.counts.after_end += 1
        return self.counts

    # --- deciding -----------------------------------------------------------------------
    def _observe(self, record: Record) -> None:
        label = record.label
        if label is None:
            self._genuine_left -= 1
            if self._genuine_left <= 0:
                self._false_dispute(record)
                self._genuine_left = self._next_false_dispute()
        elif label.scenario != MALFORMED:
            self._fraud(record, label)

    def _new_card_number(self, record: Record) -> Record:
        """The holder's transaction on the card the issuer sent after a dispute, if any."""
        txn = orjson.loads(record.value)
        pan = txn["card_number"]
        for since, old, new in self._reissued[record.key]:
            if record.ts_ms >= since and pan == old:
                pan = new
        if pan == txn["card_number"]:
            return record
        txn["card_number"] = pan
        return record._replace(value=orjson.dumps(txn))

    def _block_and_reissue(self, key: bytes | None, pan: str, reported_ms: int) -> None:
        if not self.config.reissue:
            return
        cards = self._reissued.setdefault(key, [])
        if any(old == pan for _, old, _ in cards):
            return  # this number is blocked already
        digest = hashlib.sha256(f"{pan}/{reported_ms}".encode()).hexdigest()
        body = pan[:6] + str(int(digest, 16))[: len(pan) - 7]
        cards.append((reported_ms, pan, body + luhn_check_digit(body)))
        cards.sort()

    def _next_false_dispute(self) -> int:
        """Genuine transactions until the next false dispute (geometric: one draw per dispute)."""
        p = self.config.false_dispute_rate
        if p <= 0.0:
            return sys.maxsize
        if p >= 1.0:
            return 1
        return 1 + int(math.log(1.0 - self._rng.random()) / math.log(1.0 - p))

    def _fraud(self, record: Record, label: Label) -> None:
        self.counts.fraud_seen += 1
        # One generator per victim: the same decision and delay for all of its transactions,
        # without remembering victims, and independent of every other option.
        victim = random.Random(f"{self.config.seed}/{label.story_id}/{label.account_id}")  # noqa: S311
        if victim.random() >= self.config.coverage:
            return
        delay = self._delay.draw_ms(victim)
        txn = orjson.loads(record.value)
        if txn["amount"] == 0:
            return  # an account verification moved no money: nothing to charge back
        self.counts.fraud_reported += 1
        self._push(record, txn, "fraud", record.ts_ms + delay)
        self._block_and_reissue(record.key, txn["card_number"], record.ts_ms + delay)

    def _false_dispute(self, record: Record) -> None:
        rng = self._rng
        reported = record.ts_ms + self._delay.draw_ms(rng)
        txn = orjson.loads(record.value)
        self.counts.false_disputes += 1
        self._push(record, txn, "fraud", reported)
        self._block_and_reissue(record.key, txn["card_number"], reported)
        if rng.random() < self.config.reversal_share:
            self.counts.reversals += 1
            self._push(record, txn, "genuine", reported + int(rng.uniform(*REVERSAL_DAYS) * DAY_MS))

    def _push(
        self,
        record: Record,
        txn: dict[str, Any],
        verdict: LabelValue,
        reported_ms: int,
    ) -> None:
        draft = {
            "transaction_id": txn["transaction_id"],
            "card_number": txn["card_number"],
            "merchant_id": txn["merchant_id"],
            "timestamp": txn["timestamp"],
            "amount": float(txn["amount"]),
            "currency": txn["currency"],
            "label": verdict,
            "reported_at": format_ts(from_epoch_ms(reported_ms)),
            "source": LABEL_SOURCE,
        }
        value = orjson.dumps(draft)  # the fields in the contract's order and wire format
        parse_label(value)  # an invalid chargeback would be a bug here: crash, do not send it
        self._seq += 1
        heapq.heappush(self._heap, (reported_ms, self._seq, record.key, value))

    def _file(self, value: bytes) -> None:
        if self._write is not None:
            self._write(value)
            self._write(b"\n")
            self.counts.written += 1
