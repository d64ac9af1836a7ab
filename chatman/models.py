"""Every table, imported once so that Base.metadata is complete for Alembic and tests."""

from chatman.auth.models import ApiToken, User
from chatman.campaigns.models import Campaign, CampaignRun, CampaignSegment, CampaignStep
from chatman.contacts.models import AttributeDefinition, Contact, Segment, SegmentLink, SegmentMember
from chatman.ledger.models import CampaignStat, Message, MessageEvent
from chatman.messaging.models import Template

__all__ = [
    "ApiToken",
    "AttributeDefinition",
    "Campaign",
    "CampaignRun",
    "CampaignSegment",
    "CampaignStat",
    "CampaignStep",
    "Contact",
    "Message",
    "MessageEvent",
    "Segment",
    "SegmentLink",
    "SegmentMember",
    "Template",
    "User",
]
