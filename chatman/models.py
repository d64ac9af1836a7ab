"""Every table, imported once so that Base.metadata is complete for Alembic and tests."""

from chatman.auth.models import ApiToken, User
from chatman.campaigns.models import Campaign, CampaignRun, CampaignSegment, CampaignStep
from chatman.contacts.models import AttributeDefinition, Contact, Segment, SegmentLink, SegmentMember
from chatman.flows.models import Flow, FlowSession
from chatman.ledger.models import CampaignStat, ClaimLease, Message, MessageEvent
from chatman.messaging.models import InboundMessage, Template
from chatman.outgoing.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chatman.revisions import Revision
from chatman.rules.models import Rule, RuleFiring, RuleWait
from chatman.triggers.models import Event, Trigger, TriggerFiring

__all__ = [
    "ApiToken",
    "AttributeDefinition",
    "Campaign",
    "CampaignRun",
    "CampaignSegment",
    "CampaignStat",
    "CampaignStep",
    "ClaimLease",
    "Contact",
    "Event",
    "Flow",
    "FlowSession",
    "InboundMessage",
    "Message",
    "MessageEvent",
    "Revision",
    "Rule",
    "RuleFiring",
    "RuleWait",
    "Segment",
    "SegmentLink",
    "SegmentMember",
    "Template",
    "Trigger",
    "TriggerFiring",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
