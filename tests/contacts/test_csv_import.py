from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from chatman.contacts.attributes import attribute_types
from chatman.contacts.csv_import import import_contacts
from chatman.contacts.models import AttributeDefinition, Contact
from chatman.errors import Invalid
from tests.factories import api_import, make_contact


def run(session, text: str | bytes, **kwargs):
    data = text.encode() if isinstance(text, str) else text
    kwargs.setdefault("default_region", None)
    return import_contacts(session, io.BytesIO(data), **kwargs)


def contacts(session) -> dict[str, Contact]:
    return {c.phone: c for c in session.scalars(select(Contact))}


def test_two_spellings_of_one_number_become_one_contact(session):
    report = run(session, "phone,name,city\n+91 98200 12345,Asha,Pune\n0091-9820012345,,Mumbai\n")
    assert (report.rows, report.created, report.merged, report.failed) == (2, 1, 1, 0)
    (contact,) = contacts(session).values()
    assert contact.phone == "+919820012345"
    assert contact.name == "Asha"  # an empty cell does not erase what another row gave
    assert contact.attributes == {"city": "Mumbai"}


def test_import_upserts_existing_contacts_and_merges_attributes(session):
    existing = make_contact(session, phone="+919820012345", name="Old", attributes={"tier": "gold"})
    report = run(session, "Mobile,Full Name,City\n+919820012345,New,Pune\n+919820012346,B,Delhi\n")
    assert (report.created, report.updated) == (1, 1)
    session.expire_all()
    again = session.get(Contact, existing.id)
    assert again.name == "New"
    assert again.attributes == {"tier": "gold", "city": "Pune"}


def test_rejected_rows_are_reported_with_row_value_and_reason(session):
    csv = (
        "phone,name,timezone,age\n"
        "+919820012345,A,Asia/Kolkata,31\n"
        "12345,B,,\n"
        "+919820012347,C,Mars/Base,\n"
        "+919820012348,D,,40\n"
        "+919820012349,E,,forty\n"
    )
    report = run(session, csv)
    got = [(e.row, e.column, e.value) for e in report.errors]
    # age is a number column (most accepted rows say so): "forty" is that row's mistake
    assert got == [(3, "phone", "12345"), (4, "timezone", "Mars/Base"), (6, "age", "forty")]
    assert report.created == 2
    assert "no country code" in report.errors[0].reason


def test_new_attribute_columns_get_a_type_from_their_values(session):
    csv = (
        "phone,orders,vip,signup,notes\n"
        "+919820012345,3,yes,2024-01-31,hi\n"
        "+919820012346,12,no,2023-12-01,42\n"
    )
    report = run(session, csv)
    assert report.new_attributes == {
        "orders": "number",
        "vip": "boolean",
        "signup": "date",
        "notes": "string",
    }
    assert attribute_types(session)["orders"] == "number"
    person = contacts(session)["+919820012346"]
    assert person.attributes == {"orders": 12, "vip": False, "signup": "2023-12-01", "notes": "42"}


def test_values_are_checked_against_declared_types(session):
    run(session, "phone,age\n+919820012345,30\n")
    report = run(session, "phone,age\n+919820012346,thirty\n+919820012347,41\n")
    assert [(e.row, e.column, e.value) for e in report.errors] == [(2, "age", "thirty")]
    assert contacts(session)["+919820012347"].attributes == {"age": 41}


def test_mapping_renames_and_skips_columns(session):
    csv = "Cell No,Customer,Secret\n9820012345,Asha,x\n"
    report = run(
        session,
        csv,
        default_region="IN",
        mapping={"Cell No": "phone", "Customer": "attributes.customer", "Secret": None},
    )
    assert report.created == 1
    assert contacts(session)["+919820012345"].attributes == {"customer": "Asha"}


def test_semicolon_separated_files_are_understood(session):
    report = run(session, "phone;name\n+919820012345;Asha\n")
    assert report.created == 1 and contacts(session)["+919820012345"].name == "Asha"


@pytest.mark.parametrize("workers", [1, 2])
def test_large_file_imports_in_batches_with_progress(session, workers):
    rows = "".join(f"+9198{i:08d},Name {i},{i % 7}\n" for i in range(2500))
    bad = "".join(f"12{i},Bad {i},1\n" for i in range(3))
    data = ("phone,name,bucket\n" + rows + bad + "+91 98 0000 0001,Again,9\n").encode()
    seen = []
    report = run(session, data, batch_size=300, on_progress=seen.append, workers=workers)
    assert (report.created, report.updated, report.failed) == (2500, 1, 3)
    assert [e.row for e in report.errors] == [2502, 2503, 2504]
    assert contacts(session)["+919800000001"].name == "Again"
    assert sum(seen) == len(data)
    assert session.scalar(select(func.count()).select_from(Contact)) == 2500


def nothing_written(session) -> bool:
    return (
        session.scalar(select(func.count()).select_from(Contact)) == 0
        and session.scalar(select(func.count()).select_from(AttributeDefinition)) == 0
    )


def test_file_without_phone_column_fails_before_writing(session):
    with pytest.raises(Invalid) as err:
        run(session, "name,city\nAsha,Pune\n")
    assert err.value.field == "file" and "no phone column" in err.value.reason
    assert nothing_written(session)


def test_file_with_bad_encoding_fails_before_writing_any_row(session):
    good = "".join(f"+9198{i:08d},Name {i}\n" for i in range(3000)).encode()
    data = b"phone,name\n" + good + b"+919899999999,Ren\xe9e\n"  # latin-1 at the very end
    with pytest.raises(Invalid) as err:
        run(session, data, batch_size=100)
    assert "not UTF-8" in err.value.reason
    assert nothing_written(session)


def test_mapping_to_an_unknown_column_or_target_is_refused(session):
    with pytest.raises(Invalid) as err:
        run(session, "phone\n+919820012345\n", mapping={"Mobile": "phone", "phone": "email"})
    assert set(err.value.errors) == {"mapping.Mobile", "mapping.phone"}
    assert nothing_written(session)


def test_empty_file_is_refused(session):
    with pytest.raises(Invalid):
        run(session, "")


def test_a_row_the_database_would_refuse_is_a_row_error_and_the_rest_import(
    client, auth, session, in_process_jobs
):
    rows = [f"+9198{i:08d},Person {i},Pune,{i}" for i in range(1500)]
    rows[1199] = "+919899999999,Person X,Pune," + "9" * 40  # data row 1,200 is the file's row 1,201
    text = "phone,name,city,wa_id\n" + "\n".join(rows) + "\n"
    _, done = api_import(client, auth, text)
    report = done["report"]
    assert [(e["row"], e["column"]) for e in report["errors"]] == [(1201, "wa_id")]
    assert "at most 32 characters" in report["errors"][0]["reason"]
    assert (report["rows"], report["created"], report["failed"]) == (1500, 1499, 1)
    assert session.scalar(select(func.count()).select_from(Contact)) == 1499


def test_a_file_whose_only_row_is_refused_leaves_no_attribute_behind(client, auth, session, in_process_jobs):
    _, done = api_import(client, auth, "phone,name,city\n+919820012345," + "n" * 250 + ",Pune\n")
    assert [(e["row"], e["column"]) for e in done["report"]["errors"]] == [(2, "name")]
    assert done["report"]["new_attributes"] == {}
    assert nothing_written(session)


def test_only_accepted_rows_vote_and_a_typo_does_not_turn_numbers_into_strings(session):
    csv = (
        "phone,orders,tier\n"
        "+919820012345,3,1\n"
        "+919820012346,12,\n"
        "+919820012347,three,\n"
        "+919820012348,7,\n"
        "not a phone,,gold\n"  # refused rows do not vote: tier stays a number column
        "nor this,,silver\n"
    )
    report = run(session, csv)
    assert report.new_attributes == {"orders": "number", "tier": "number"}
    assert [(e.row, e.column, e.value) for e in report.errors] == [
        (4, "orders", "three"),
        (6, "phone", "not a phone"),
        (7, "phone", "nor this"),
    ]
    assert contacts(session)["+919820012345"].attributes == {"orders": 3, "tier": 1}

    # A column only refused rows fill defines nothing.
    report = run(session, "phone,score\nnope,9\n+919820012349,\n")
    assert report.new_attributes == {} and "score" not in attribute_types(session)


def test_numbers_written_as_whatsapp_writes_them_import_without_a_default_region(session):
    report = run(session, "phone\n919820012345\n14155238886\n9820012345\n")
    assert set(contacts(session)) == {"+919820012345", "+14155238886"}
    assert [(e.row, "no country code" in e.reason) for e in report.errors] == [(4, True)]


def test_a_nul_in_a_cell_is_that_rows_error(session):
    report = run(session, "phone,name\n+919820012345,A\x00B\n+919820012346,C\n")
    assert [(e.row, e.column) for e in report.errors] == [(2, "name")]
    assert set(contacts(session)) == {"+919820012346"}


def test_a_file_with_a_column_per_customer_is_refused_before_writing(session):
    header = "phone," + ",".join(f"c{i}" for i in range(2000))
    with pytest.raises(Invalid) as err:
        run(session, header + "\n+919820012345" + ",1" * 2000 + "\n")
    assert "at most 50" in err.value.message and "IMPORT_MAX_NEW_ATTRIBUTES" in err.value.message
    assert nothing_written(session)
    with pytest.raises(Invalid) as err:
        run(session, "phone,a,b,c\n+919820012345,1,2,3\n", max_attributes=2)
    assert "at most 2 (MAX_ATTRIBUTES)" in err.value.message
    assert nothing_written(session)
