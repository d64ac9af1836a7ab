"""Every table, imported once so that Base.metadata is complete for Alembic and tests."""

from chatman.auth.models import ApiToken, User
from chatman.contacts.models import AttributeDefinition, Contact, Segment, SegmentLink, SegmentMember

__all__ = ["ApiToken", "AttributeDefinition", "Contact", "Segment", "SegmentLink", "SegmentMember", "User"]
