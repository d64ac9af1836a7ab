from __future__ import annotations

from sqlalchemy import func, select

from chatman.auth.models import ApiToken, User
from chatman.contacts.models import Contact, Segment


def test_import_command_prints_progress_errors_and_totals(app, tmp_path, session):
    path = tmp_path / "contacts.csv"
    path.write_text("phone,name,city\n+919820012345,Asha,Pune\nxyz,Bad,Goa\n+919820012346,Ravi,Delhi\n")
    result = app.test_cli_runner().invoke(args=["contacts", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 rows: 2 created, 0 updated, 0 merged duplicates, 1 rejected" in result.output
    assert "row 3: column phone, value 'xyz'" in result.output
    assert "new attribute city (string)" in result.output
    assert "Importing" in result.output  # the progress bar
    assert session.scalar(select(func.count()).select_from(Contact)) == 2


def test_import_command_refuses_a_file_without_phone_column(app, tmp_path, session):
    path = tmp_path / "contacts.csv"
    path.write_text("name\nAsha\n")
    result = app.test_cli_runner().invoke(args=["contacts", "import", str(path)])
    assert result.exit_code != 0
    assert "no phone column" in result.output
    assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_import_command_reads_standard_input_and_mapping(app, session):
    result = app.test_cli_runner().invoke(
        args=["contacts", "import", "-", "--mapping", '{"Cell": "phone"}'], input="Cell\n+919820012345\n"
    )
    assert result.exit_code == 0, result.output
    assert session.scalar(select(Contact.phone)) == "+919820012345"


def test_token_created_on_the_command_line_opens_the_api(app, client, session):
    result = app.test_cli_runner().invoke(args=["tokens", "create", "zapier"])
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    assert client.get("/api/v1/contacts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    stored = session.scalar(select(ApiToken))
    assert token not in (stored.token_hash, stored.prefix)  # only a hash is kept
    listed = app.test_cli_runner().invoke(args=["tokens", "list"])
    assert "zapier" in listed.output and token not in listed.output
    again = app.test_cli_runner().invoke(args=["tokens", "create", "zapier"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_user_create_prompts_for_the_password_and_stores_a_hash(app, session):
    from chatman.auth.accounts import authenticate_user

    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["users", "create", "Ops@Example.com"], input="correct horse battery\ncorrect horse battery\n"
    )
    assert result.exit_code == 0, result.output
    user = session.scalar(select(User))
    assert user.email == "ops@example.com" and "correct horse" not in user.password_hash
    assert authenticate_user(session, "ops@example.com", "correct horse battery") is not None
    assert authenticate_user(session, "ops@example.com", "wrong password!") is None
    short = runner.invoke(args=["users", "create", "b@example.com"], input="short\nshort\n")
    assert short.exit_code != 0 and "at least" in short.output


def test_demo_seed_fills_an_empty_database_once(app, session):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert first.exit_code == 0 and "contacts created" in first.output
    contacts = session.scalar(select(func.count()).select_from(Contact))
    assert contacts > 10 and session.scalar(select(func.count()).select_from(Segment)) == 3
    second = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert "nothing to do" in second.output
    assert session.scalar(select(func.count()).select_from(Contact)) == contacts
