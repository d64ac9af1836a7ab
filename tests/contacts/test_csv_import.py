from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from chatman.contacts.attributes import attribute_types
from chatman.contacts.csv_import import import_contacts
from chatman.contacts.models import AttributeDefinition, Contact
from chatman.errors import Invalid
from tests.factories import make_contact


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
    assert got == [(3, "phone", "12345"), (4, "timezone", "Mars/Base")]
    assert report.created == 3
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
