import pytest

from chatman.contacts.fields import coerce_attribute, normalise_phone, validate_timezone
from chatman.errors import Invalid


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+91 98200 12345", None, "+919820012345"),
        ("+91-98200-12345", None, "+919820012345"),
        ("whatsapp:+14155550123", None, "+14155550123"),
        ("0091 98200 12345", None, "+919820012345"),
        ("98200 12345", "IN", "+919820012345"),
        ("098200 12345", "IN", "+919820012345"),
        ("(415) 555-0123", "US", "+14155550123"),
    ],
)
def test_phone_spellings_normalise_to_one_e164(raw, region, expected):
    assert normalise_phone(raw, region) == expected


def test_phone_without_country_code_or_region_is_refused_with_a_hint():
    with pytest.raises(Invalid) as err:
        normalise_phone("98200 12345", None)
    assert "no country code" in err.value.reason and "DEFAULT_REGION" in err.value.reason


@pytest.mark.parametrize("raw", ["+9198200", "hello", "+1 555", "", "+999 123456789"])
def test_invalid_phone_is_refused(raw):
    with pytest.raises(Invalid) as err:
        normalise_phone(raw, "IN")
    assert err.value.field == "phone"


def test_timezone_must_be_an_iana_name():
    assert validate_timezone("Asia/Kolkata") == "Asia/Kolkata"
    for bad in ("Mars/Base", "IST", "asia/kolkata", ""):
        with pytest.raises(Invalid):
            validate_timezone(bad)


@pytest.mark.parametrize(
    ("value", "type_", "stored"),
    [
        ("42", "number", 42),
        ("1,200.5", "number", 1200.5),
        (3.5, "number", 3.5),
        ("yes", "boolean", True),
        ("FALSE", "boolean", False),
        ("2024-02-29", "date", "2024-02-29"),
        (12, "string", "12"),
        (True, "string", "true"),
    ],
)
def test_attribute_values_are_coerced_to_their_declared_type(value, type_, stored):
    assert coerce_attribute(value, type_, "attributes.x") == stored


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        ("abc", "number"),
        (True, "number"),
        ("maybe", "boolean"),
        ("2024-02-30", "date"),
        (20240101, "date"),
        (float("nan"), "number"),
        ([1], "string"),
    ],
)
def test_attribute_values_of_the_wrong_type_are_refused(value, type_):
    with pytest.raises(Invalid) as err:
        coerce_attribute(value, type_, "attributes.x")
    assert err.value.field == "attributes.x"
