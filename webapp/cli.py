"""``flask --app webapp ...`` commands: users, API tokens, the label outbox and demo data.

flask --app webapp create-user alice --role analyst        # prompts for the password
echo "$PW" | flask --app webapp create-user bot --role viewer --password-stdin
flask --app webapp create-token alice --name "case tool"   # prints the token once
flask --app webapp revoke-token 3f2a9c0e1b7d4a55
flask --app webapp publish-labels                          # send labels left by a Kafka outage
flask --app webapp backfill-queue-keys                     # once, after upgrading to queue keys
"""

from __future__ import annotations

import secrets
import sys

import click
from flask import Flask
from flask.cli import with_appcontext
from pymongo.errors import PyMongoError

from fraudwatch.alert_store import ALERTS, backfill_queue_keys
from webapp.data.users import UserError
from webapp.services import Services, services
from webapp.settings import ROLES

DEV_USER = "dev"


def _unreachable(svc: Services, exc: Exception) -> click.ClickException:
    return click.ClickException(
        f"MongoDB is not reachable at {svc.settings.mongodb_uri} ({exc.__class__.__name__}): "
        "is the stack up? Run `make up`."
    )


def seed_dev_user(app: Flask) -> None:
    """``WEBAPP_CREATE_DEV_USER=1`` (``make run``): (re)create ``dev`` with the password in
    ``WEBAPP_DEV_PASSWORD``, or a fresh random one that is printed once."""
    svc = services(app)
    given = svc.settings.webapp_dev_password
    password = given.get_secret_value() if given else secrets.token_urlsafe(12)
    try:
        svc.ensure_indexes()
        svc.access.create_user(DEV_USER, "analyst", password, replace=True)
    except PyMongoError as exc:
        raise _unreachable(svc, exc) from exc
    if given:  # whoever chose it shows it (make run: in its ready block)
        print(f"dev user: {DEV_USER} (password from WEBAPP_DEV_PASSWORD)", flush=True)
    else:
        print(f"dev user: {DEV_USER} / {password}", flush=True)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@click.command("create-user")
@with_appcontext
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer or analyst")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--replace", is_flag=True, help="Reset the password/role of an existing user.")
def create_user_command(name: str, role: str, password_stdin: bool, replace: bool) -> None:
    """Create a console user (password hashed with scrypt)."""
    svc = services()
    password = _read_password(password_stdin)
    try:
        svc.ensure_indexes()
        user = svc.access.create_user(name, role, password, replace=replace)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    except PyMongoError as exc:
        raise _unreachable(svc, exc) from exc
    click.echo(f"user {user.name} ({user.role}) saved")


@click.command("delete-user")
@with_appcontext
@click.argument("name")
def delete_user_command(name: str) -> None:
    """Delete a stored user and revoke its API tokens."""
    svc = services()
    if not svc.access.delete_user(name):
        raise click.ClickException(f"there is no stored user '{name}'")
    click.echo(f"user {name} deleted; its tokens are revoked")


@click.command("list-users")
@with_appcontext
def list_users_command() -> None:
    """List users (configuration and database)."""
    for user in services().access.list_users():
        click.echo(f"{user.name}\t{user.role}\t{user.source}")


@click.command("hash-password")
@with_appcontext
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def hash_password_command(password_stdin: bool) -> None:
    """Print a password hash for a WEBAPP_USERS entry."""
    click.echo(services().access.hash_password(_read_password(password_stdin)))


@click.command("create-token")
@with_appcontext
@click.argument("user")
@click.option("--name", default="", help="What the token is for (shown in list-tokens).")
def create_token_command(user: str, name: str) -> None:
    """Create an API token for USER; it is printed once and stored only as a hash."""
    svc = services()
    try:
        svc.ensure_indexes()
        token_id, token = svc.access.create_token(user, name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token id: {token_id}")
    click.echo(f"token:    {token}")
    click.echo("Store the token now: it cannot be shown again. Use it as 'Authorization: Bearer'.")


@click.command("revoke-token")
@with_appcontext
@click.argument("token_id")
def revoke_token_command(token_id: str) -> None:
    """Revoke an API token by its id."""
    if not services().access.revoke_token(token_id):
        raise click.ClickException(f"there is no active token with id '{token_id}'")
    click.echo(f"token {token_id} revoked")


@click.command("list-tokens")
@with_appcontext
@click.option("--user", default=None, help="Only this user's tokens.")
def list_tokens_command(user: str | None) -> None:
    """List API tokens (ids, owners, state; never the tokens themselves)."""
    for t in services().access.list_tokens(user):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        created = f"{t.created_at:%Y-%m-%d %H:%M}" if t.created_at else "-"
        click.echo(f"{t.token_id}\t{t.user}\t{created}\t{state}\t{t.name}")


@click.command("seed-demo")
@with_appcontext
@click.option("--count", default=300, show_default=True, help="How many alerts.")
@click.option("--minutes", default=90, show_default=True, help="Spread over the last N minutes.")
def seed_demo_command(count: int, minutes: int) -> None:
    """Write synthetic alerts and minute stats through the dataflow's store code."""
    from devtools.demo_data import seed_demo

    svc = services()
    svc.ensure_indexes()
    written = seed_demo(svc.alerts.database, svc.tokenizer, count=count, minutes=minutes)
    click.echo(f"{written} demo alerts written to {svc.settings.mongodb_database}")


@click.command("publish-labels")
@with_appcontext
@click.option(
    "--batch", default=500, show_default=True, help="Labels sent per round (oldest first)."
)
def publish_labels_command(batch: int) -> None:
    """Send the fraud labels waiting in the outbox (dispositions made while Kafka was down).

    Exits non-zero while some cannot be sent; run it again when Kafka is back. Sending a
    label twice is harmless (the detector dedupes), so this is safe next to a running console.
    """
    svc = services()
    if svc.labels is None:
        raise click.ClickException(
            "WEBAPP_PUBLISH_LABELS is off: the console publishes no labels. Set it to 1 to "
            "send the outbox."
        )
    try:
        svc.ensure_indexes()
        totals = {"sent": 0, "dropped": 0}
        while True:
            delivery = svc.labels.deliver(svc.now(), limit=batch)
            totals["sent"] += len(delivery.sent)
            totals["dropped"] += len(delivery.dropped)
            # Stop when a round makes no progress: the rest failed or waits for a request.
            if delivery.failed or not (delivery.sent or delivery.dropped):
                break
        left = svc.labels.outbox.count()
    except PyMongoError as exc:
        raise _unreachable(svc, exc) from exc
    click.echo(
        f"{totals['sent']} labels sent to {svc.labels.topic}; {totals['dropped']} dropped "
        f"(their disposition never happened); {left} left in the outbox"
    )
    if delivery.failed:
        raise click.ClickException(
            f"{len(delivery.failed)} labels were not acknowledged by Kafka at "
            f"{svc.labels.producer.bootstrap} ({delivery.error}). They stay in the outbox: is "
            "Kafka up and LABELS_TOPIC created? Run this again when it is."
        )


@click.command("backfill-queue-keys")
@with_appcontext
def backfill_queue_keys_command() -> None:
    """Give alerts written before this release their ``queue_key`` (the queue's order and
    cursor: day, then score). Idempotent; safe next to a running dataflow and console."""
    svc = services()
    try:
        svc.ensure_indexes()
        done = backfill_queue_keys(svc.alerts.database[ALERTS])
    except PyMongoError as exc:
        raise _unreachable(svc, exc) from exc
    click.echo(f"{done} alerts given a queue key in {svc.settings.mongodb_database}")


def register_commands(app: Flask) -> None:
    for command in (
        create_user_command,
        delete_user_command,
        list_users_command,
        hash_password_command,
        create_token_command,
        revoke_token_command,
        list_tokens_command,
        seed_demo_command,
        publish_labels_command,
        backfill_queue_keys_command,
    ):
        app.cli.add_command(command)
