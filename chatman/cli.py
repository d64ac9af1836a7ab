"""`flask` commands: contacts import, tokens, users, demo data, worker, clock."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import click
from flask import Flask
from flask.cli import AppGroup
from flask_migrate import Migrate

from chatman.auth import accounts
from chatman.contacts.csv_import import ImportReport, import_contacts
from chatman.errors import DomainError
from chatman.extensions import database, redis_client, settings

PARALLEL_IMPORT_BYTES = 2_000_000
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

contacts_cli = AppGroup("contacts", help="Contacts: import from CSV.")
tokens_cli = AppGroup("tokens", help="API bearer tokens.")
users_cli = AppGroup("users", help="Admin UI users.")
demo_cli = AppGroup("demo", help="Demo data.")
reports_cli = AppGroup("reports", help="Campaign reports.")
simulator_cli = AppGroup("simulator", help="The simulated WhatsApp network (no Twilio account).")
statuses_cli = AppGroup("statuses", help="Delivery-status callbacks on their way to the ledger.")


def _fail(error: DomainError) -> click.ClickException:
    details = "".join(
        f"\n  {f}: {', '.join(r)}" for f, r in error.errors.items() if not error.message.startswith(f"{f}:")
    )
    return click.ClickException(error.message + details)


@contacts_cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--mapping", help='JSON object column -> target, e.g. \'{"Mobile": "phone"}\'')
@click.option("--show-errors", default=50, show_default=True, help="rejected rows to print")
def import_command(file, mapping: str | None, show_errors: int) -> None:
    """Import contacts from a UTF-8 CSV FILE ('-' for standard input)."""
    try:
        parsed = json.loads(mapping) if mapping else None
    except ValueError:
        raise click.BadParameter("must be a JSON object", param_hint="--mapping") from None
    with ExitStack() as stack:
        if not file.seekable():  # standard input: both import passes need to rewind
            spool = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(file, spool)
            spool.seek(0)
            file = spool
        report = _import_with_progress(file, parsed)
    for name, type_ in report.new_attributes.items():
        click.echo(f"new attribute {name} ({type_})")
    for error in report.errors[:show_errors]:
        where = f"column {error.column}, " if error.column else ""
        click.echo(f"row {error.row}: {where}value {error.value!r}: {error.reason}", err=True)
    if report.failed > show_errors:
        click.echo(f"... and {report.failed - show_errors} more rejected rows", err=True)
    click.echo(
        f"{report.rows} rows: {report.created} created, {report.updated} updated, "
        f"{report.merged} merged duplicates, {report.failed} rejected"
    )


def _import_with_progress(file: BinaryIO, mapping: dict | None) -> ImportReport:
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    with (
        database().session() as session,
        click.progressbar(
            length=size, label="Importing", file=sys.stderr, show_pos=False, show_percent=True
        ) as bar,
    ):
        try:
            return import_contacts(
                session,
                file,
                default_region=settings().default_region,
                mapping=mapping,
                batch_size=settings().import_batch_size,
                max_new_attributes=settings().import_max_new_attributes,
                max_attributes=settings().max_attributes,
                # Worth the process start-up only for a file of some size.
                workers=min(os.cpu_count() or 1, 4) if size > PARALLEL_IMPORT_BYTES else 1,
                on_progress=bar.update,
            )
        except DomainError as error:
            raise _fail(error) from None


@tokens_cli.command("create")
@click.argument("name")
def token_create(name: str) -> None:
    """Create an API token called NAME and print it (it is shown only once)."""
    with database().session() as session:
        try:
            _, token = accounts.create_token(session, name)
        except DomainError as error:
            raise _fail(error) from None
    click.echo(token)


@tokens_cli.command("list")
def token_list() -> None:
    with database().session() as session:
        for row in accounts.list_tokens(session):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            click.echo(f"{row.name}\t{row.prefix}...\t{state}\tlast used {used}")


@tokens_cli.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    with database().session() as session:
        try:
            accounts.revoke_token(session, name)
        except DomainError as error:
            raise _fail(error) from None
    click.echo(f"revoked {name}")


@users_cli.command("create")
@click.argument("email")
@click.password_option(help="prompted for when not given")
def user_create(email: str, password: str) -> None:
    """Create an admin UI user with e-mail EMAIL."""
    with database().session() as session:
        try:
            user = accounts.create_user(session, email, password)
        except DomainError as error:
            raise _fail(error) from None
    click.echo(f"created user {user.email}")


DEMO_FALLBACK = {
    "name": "Fallback",
    "is_fallback": True,
    "action": "reply",
    "reply_body": "Thanks for writing! We did not catch that; someone from our team will read it.",
}


@demo_cli.command("seed")
@click.option("--if-empty", is_flag=True, help="do nothing when contacts already exist")
def demo_seed(if_empty: bool) -> None:
    """Load demo contacts, attributes and segments, and a fallback reply for what no trigger
    matches (so a customer of the demo always hears back)."""
    from chatman.contacts.demo import seed_demo
    from chatman.triggers.crud import list_triggers, save_trigger

    with database().session() as session:
        created = seed_demo(session, only_if_empty=if_empty)
        if created and not any(t.is_fallback for t in list_triggers(session)):
            save_trigger(session, DEMO_FALLBACK)
    click.echo(f"demo data: {created} contacts created" if created else "demo data: nothing to do")


@reports_cli.command("verify")
@click.option("--campaign", "campaign_id", type=int, help="only this campaign")
def reports_verify(campaign_id: int | None) -> None:
    """Recount every counter and time-series bucket from the ledger and report any difference."""
    from chatman.reports.verify import verify

    with database().session() as session:
        result = verify(session, campaign_id)
    for difference in result.differences:
        click.echo(str(difference))
    if result.differences:
        raise click.ClickException(f"{len(result.differences)} figures differ from the recount")
    click.echo(f"{result.checked} counters and time-series buckets checked: all equal to the recount")


@statuses_cli.command("set-aside")
@click.option("--limit", default=20, show_default=True, help="how many, newest first")
def statuses_set_aside(limit: int) -> None:
    """Callbacks that could not be applied, each with why (see /healthz status_set_aside)."""
    from chatman import inbox

    entries = inbox.set_aside_entries(redis_client(), inbox.STATUS, limit)
    for entry in entries:
        click.echo(f"{entry['id']}  {entry['reason']}\n    {entry['data'][:500]}")
    click.echo(f"{inbox.set_aside_count(redis_client(), inbox.STATUS)} set aside in all")


@statuses_cli.command("retry-set-aside")
def statuses_retry_set_aside() -> None:
    """Put the set-aside callbacks back in line (once what refused them is fixed)."""
    from chatman import inbox
    from chatman.jobs import enqueue_status_drain

    moved = inbox.retry_set_aside(redis_client(), inbox.STATUS)
    if moved:
        enqueue_status_drain(redis_client(), settings())
    click.echo(f"{moved} callbacks back in line")


@simulator_cli.command("say")
@click.argument("phone")
@click.argument("text", required=False)
@click.option("--button", "button_payload", help="tap a button with this payload instead of typing")
@click.option("--name", "profile_name", help="the customer's WhatsApp profile name (sent as ProfileName)")
@click.option("--wait", default=3.0, show_default=True, help="seconds to wait for the business to answer")
def simulator_say(
    phone: str, text: str | None, button_payload: str | None, profile_name: str | None, wait: float
) -> None:
    """Write TEXT to the business as the customer PHONE; print what the business answers."""
    import time

    from chatman.contacts.fields import normalise_phone
    from chatman.messaging import simulator

    config = settings()
    off = simulator.off_because(config)
    if off:
        raise click.ClickException(off)
    if not (text or button_payload):
        raise click.UsageError("say something: TEXT or --button PAYLOAD")
    try:
        phone = normalise_phone(phone, config.default_region)
        before = len(simulator.sent_to(redis_client(), phone))
        simulator.say(config, phone, body=text, button_payload=button_payload, profile_name=profile_name)
    except DomainError as error:  # NotReceived: the web process is not at PUBLIC_BASE_URL
        raise _fail(error) from None
    deadline = time.monotonic() + wait
    shown = before
    while time.monotonic() < deadline:
        answers = simulator.sent_to(redis_client(), phone)
        for answer in answers[shown:]:
            click.echo(f"business: {answer['body'] or answer['content_sid']}")
        shown = len(answers)
        time.sleep(0.2)
    if shown == before:
        click.echo("(no answer)")


@click.command("worker")
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
def worker_command(burst: bool) -> None:
    """Run an RQ worker (with its scheduler) on the Chatman queues."""
    from chatman.jobs import run_worker

    logging.basicConfig(level=logging.INFO)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # a dozen lines per send
    run_worker(redis_client(), burst=burst)


@click.command("clock")
@click.option("--ticks", type=int, help="stop after this many ticks")
def clock_command(ticks: int | None) -> None:
    """Run the clock: every CLOCK_INTERVAL_S seconds, enqueue what has fallen due."""
    from chatman import clock

    logging.basicConfig(level=logging.INFO)
    tasks = clock.default_tasks(database(), redis_client(), settings())
    clock.run(redis_client(), tasks, settings().clock_interval_s, ticks=ticks)


def init_cli(app: Flask) -> None:
    Migrate(
        app, app.extensions["chatman.db"], directory=str(MIGRATIONS), render_as_batch=True, compare_type=True
    )
    for command in (
        contacts_cli,
        tokens_cli,
        users_cli,
        demo_cli,
        reports_cli,
        simulator_cli,
        statuses_cli,
        worker_command,
        clock_command,
    ):
        app.cli.add_command(command)
