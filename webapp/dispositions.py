"""Recording an analyst's disposition, and the fraud label a verdict publishes.

One function for the HTML console and the JSON API, so both keep the same order of writes:
label intent (outbox) -> compare-and-set audit entry + alert status -> deliver the outbox.
The disposition stands once its audit entry is written, whatever happens to Kafka after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pymongo.errors import PyMongoError

from fraudwatch.alert_store import AlertView, DispositionView
from fraudwatch.vocabulary import STATUS_LABELS
from webapp.data.label_outbox import (
    LABEL_FOR_STATUS,
    LabelPublisher,
    LabelUnavailable,
    OutboxEntry,
    label_for,
)
from webapp.data.store import AlertNotFound, DispositionConflict, TransitionNotAllowed
from webapp.services import Services

_log = logging.getLogger("fraudwatch.webapp.labels")

LabelDelivery = Literal["sent", "pending", "unavailable"]


@dataclass(frozen=True, slots=True)
class LabelOutcome:
    """What became of a verdict's fraud label."""

    label: str  # "fraud" or "genuine"
    delivery: LabelDelivery
    detail: str = ""  # why it is unavailable

    @property
    def message(self) -> str:
        if self.delivery == "sent":
            return f"The {self.label} label was sent to the detector."
        if self.delivery == "pending":
            return (
                f"Disposition saved; the {self.label} label will be sent when Kafka is back "
                "(it waits in the outbox)."
            )
        return f"Disposition saved; no {self.label} label was sent: {self.detail}."

    def to_api(self) -> dict[str, str]:
        return {"label": self.label, "delivery": self.delivery, "message": self.message}


@dataclass(frozen=True, slots=True)
class Disposed:
    """A recorded disposition and, for a verdict, what became of its label."""

    entry: DispositionView
    label: LabelOutcome | None

    @property
    def message(self) -> str:
        """The sentence for the analyst (flash message, API ``message``)."""
        changed = f"Status changed to {STATUS_LABELS.get(self.entry.to_status, '?')}."
        return f"{changed} {self.label.message}" if self.label else changed


def record_disposition(
    svc: Services,
    alert_id: str,
    *,
    seen: str,
    to: str,
    user: str,
    comment: str,
    seen_version: int | None = None,
    alert: AlertView | None = None,
) -> Disposed:
    """Move an alert to ``to`` (see ``AlertStore.change_status``) and publish its label.

    Args:
        alert: the alert when the caller has just read it (saves one read).

    Raises:
        TransitionNotAllowed, AlertNotFound, DispositionConflict, PyMongoError: as
            ``AlertStore.change_status``; then no label is sent (after a ``PyMongoError``
            the outbox sends it only if the disposition was recorded after all).
    """
    now = svc.now()
    publisher = svc.labels
    intent: OutboxEntry | None = None
    unavailable: LabelOutcome | None = None
    if publisher is not None and to in LABEL_FOR_STATUS:
        alert = alert or svc.alerts.get(alert_id)
        if alert is None:
            raise AlertNotFound(alert_id)
        # Only a change that can win gets an intent; the others fail in change_status below.
        if alert.status == seen and to in alert.next_statuses:
            version = seen_version if seen_version is not None else alert.status_version
            try:
                label = label_for(alert, to, now)
            except LabelUnavailable as exc:
                unavailable = LabelOutcome(LABEL_FOR_STATUS[to], "unavailable", str(exc))
                label = None
            if label is not None:
                intent = OutboxEntry.for_label(label, alert_id=alert_id, version=version, now=now)
                publisher.outbox.add(intent)
                # The compare-and-set must be on the version the intent names.
                seen_version = version
    try:
        entry = svc.alerts.change_status(
            alert_id,
            seen=seen,
            to=to,
            user=user,
            comment=comment,
            now=now,
            seen_version=seen_version,
            label=intent.label if intent else None,
            label_id=intent.label_id if intent else None,
        )
    except (DispositionConflict, TransitionNotAllowed, AlertNotFound):
        # Certainly not recorded. (A PyMongoError is not certain: the audit insert may have
        # gone through, so its intent stays for delivery to judge by the audit entry.)
        if publisher is not None and intent is not None:
            _discard_quietly(publisher, intent)
        raise
    if publisher is None or intent is None:
        return Disposed(entry, unavailable)
    return Disposed(entry, _deliver(publisher, intent, svc.now()))


def _deliver(publisher: LabelPublisher, intent: OutboxEntry, now: datetime) -> LabelOutcome:
    """Send the outbox (this label and any left over from earlier failures, oldest first)."""
    try:
        delivery = publisher.deliver(now, confirmed=intent.label_id)
    except PyMongoError as exc:
        # The disposition is recorded and its intent is in the outbox: the next delivery
        # (another disposition, or publish-labels) sends it.
        _log.warning(
            "label outbox unavailable after a disposition",
            extra={"fields": {"audit_id": intent.audit_id, "error": str(exc)}},
        )
        return LabelOutcome(intent.label, "pending")
    return LabelOutcome(intent.label, "sent" if intent.label_id in delivery.sent else "pending")


def _discard_quietly(publisher: LabelPublisher, intent: OutboxEntry) -> None:
    """Remove the intent of a disposition that did not happen; if that fails too, delivery
    drops it later (its audit entry never names it)."""
    try:
        publisher.outbox.discard([intent.label_id])
    except PyMongoError:
        _log.info("left an intent for delivery to drop", extra={"fields": {"id": intent.label_id}})
