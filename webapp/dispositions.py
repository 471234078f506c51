"""Recording an analyst's disposition, and the fraud label a verdict publishes.

One function for the HTML console and the JSON API, so both keep the same order of writes:
label intent (outbox) -> compare-and-set audit entry + alert status -> deliver the outbox.
The disposition stands once its audit entry is written, whatever happens to Kafka after.
``decide_case`` applies one decision to every alert of a case, each through that same path
(its own audit entry, compare-and-set and label), with the case's id on each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pymongo.errors import PyMongoError

from fraudwatch.alert_store import AlertView, DispositionView
from fraudwatch.vocabulary import OUTCOMES, STATUS_LABELS, TRANSITIONS, UNDECIDED
from webapp.data.cases import Case
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
    case_id: str | None = None,
) -> Disposed:
    """Move an alert to ``to`` (see ``AlertStore.change_status``) and publish its label.

    Args:
        alert: the alert when the caller has just read it (saves one read).
        case_id: the case this change is made on (``decide_case``), recorded with it.

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
            case_id=case_id,
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


class CaseChanged(DispositionConflict):
    """The case gained an alert or changed status after the analyst loaded it."""

    def __init__(self, seen: str, current: str) -> None:
        super().__init__(seen, current)
        self.args = (
            "This case changed after you opened it (a new alert joined it, or someone decided "
            "part of it). Reload the case to see its alerts now, then decide again.",
        )


@dataclass(frozen=True, slots=True)
class CaseDecided:
    """A decision on a case: what each of its alerts became."""

    case_id: str
    to: str
    changed: tuple[Disposed, ...]
    conflicts: int  # alerts someone else changed between the check and the write

    @property
    def labels(self) -> dict[str, int]:
        """How the verdict's labels went: {"sent": n, "pending": n, "unavailable": n}."""
        out: dict[str, int] = {}
        for d in self.changed:
            if d.label is not None:
                out[d.label.delivery] = out.get(d.label.delivery, 0) + 1
        return out

    @property
    def message(self) -> str:
        n = len(self.changed)
        text = (
            f"Case moved to {STATUS_LABELS.get(self.to, '?')}: "
            f"{n} alert{'' if n == 1 else 's'} changed."
        )
        labels = self.labels
        if labels.get("sent"):
            text += f" {labels['sent']} label(s) sent to the detector."
        if labels.get("pending"):
            text += f" {labels['pending']} label(s) wait in the outbox until Kafka is back."
        if labels.get("unavailable"):
            text += f" {labels['unavailable']} alert(s) could not be labelled."
        if self.conflicts:
            text += f" {self.conflicts} alert(s) had been changed by someone else and were left."
        return text

    @property
    def all_delivered(self) -> bool:
        labels = self.labels
        return not labels.get("pending") and not labels.get("unavailable") and not self.conflicts


def decide_case(
    svc: Services,
    case: Case,
    *,
    seen: str,
    seen_signature: str,
    to: str,
    user: str,
    comment: str,
) -> CaseDecided:
    """Move every alert of ``case`` that the decision covers to ``to``.

    The analyst decided on the case as loaded: ``seen`` (its status) and ``seen_signature``
    (its alerts and their versions) must still hold, else :class:`CaseChanged`. An open case's
    undecided alerts move; a decided case re-opened for investigation moves all its alerts.
    A verdict writes the case's id onto each alert, so the case stays together.

    Raises:
        CaseChanged, TransitionNotAllowed, PyMongoError
    """
    if case.status != seen or case.signature != seen_signature:
        raise CaseChanged(seen, case.status)
    if to not in TRANSITIONS.get(case.status, ()):
        allowed = ", ".join(TRANSITIONS.get(case.status, ())) or "nothing"
        raise TransitionNotAllowed(f"A case in '{case.status}' can move to {allowed}, not '{to}'.")
    members = case.undecided if case.is_open else case.alerts
    case_id = case.case_id if to in OUTCOMES or case.status not in UNDECIDED else None
    changed: list[Disposed] = []
    conflicts = 0
    for a in members:
        if a.status == to or to not in TRANSITIONS.get(a.status, ()):
            continue
        try:
            done = record_disposition(
                svc,
                a.alert_id,
                seen=a.status,
                to=to,
                user=user,
                comment=comment,
                seen_version=a.status_version,
                alert=a,
                case_id=case_id,
            )
        except (DispositionConflict, AlertNotFound):
            conflicts += 1
            continue
        changed.append(done)
    if not changed and conflicts:
        raise CaseChanged(seen, case.status)
    return CaseDecided(case.case_id, to, tuple(changed), conflicts)
