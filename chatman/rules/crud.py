"""Rules as the API edits them, and their firings as the audit shows them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatman.campaigns.lifecycle import get_campaign
from chatman.campaigns.models import CampaignStep
from chatman.errors import Invalid, NotFound
from chatman.rules.definition import parse_actions, parse_condition
from chatman.rules.models import Rule, RuleFiring


def get_rule(session: Session, rule_id: int) -> Rule:
    rule = session.get(Rule, rule_id)
    if rule is None:
        raise NotFound(f"rule {rule_id} not found")
    return rule


def list_rules(session: Session, campaign_id: int) -> list[Rule]:
    get_campaign(session, campaign_id)
    return list(session.scalars(select(Rule).where(Rule.campaign_id == campaign_id).order_by(Rule.id)))


def _apply(session: Session, rule: Rule, data: Mapping[str, Any]) -> None:
    if "name" in data:
        if not isinstance(data["name"], str) or not 1 <= len(data["name"]) <= 200:
            raise Invalid("name", "a name of 1 to 200 characters")
        rule.name = data["name"]
    if "step_id" in data:
        step = data["step_id"]
        if (
            step is not None
            and session.scalar(
                select(CampaignStep.id).where(
                    CampaignStep.id == step, CampaignStep.campaign_id == rule.campaign_id
                )
            )
            is None
        ):
            raise Invalid("step_id", f"campaign {rule.campaign_id} has no step {step}")
        rule.step_id = step
    if "enabled" in data:
        rule.enabled = bool(data["enabled"])
    if "condition" in data:
        rule.condition = parse_condition(data["condition"])
    if "actions" in data:
        rule.actions = parse_actions(session, data["actions"])


def create_rule(session: Session, campaign_id: int, data: Mapping[str, Any]) -> Rule:
    get_campaign(session, campaign_id)
    for required in ("name", "condition", "actions"):
        if required not in data:
            raise Invalid(required, "required")
    rule = Rule(campaign_id=campaign_id, enabled=True)
    _apply(session, rule, data)
    session.add(rule)
    session.flush()
    return rule


def update_rule(session: Session, rule_id: int, data: Mapping[str, Any]) -> Rule:
    rule = get_rule(session, rule_id)
    _apply(session, rule, data)
    session.flush()
    return rule


def delete_rule(session: Session, rule_id: int) -> None:
    session.delete(get_rule(session, rule_id))
    session.flush()


def list_firings(
    session: Session,
    rule_id: int | None = None,
    contact_id: int | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[RuleFiring]:
    query = select(RuleFiring).where(RuleFiring.id > after).order_by(RuleFiring.id).limit(limit)
    if rule_id is not None:
        query = query.where(RuleFiring.rule_id == get_rule(session, rule_id).id)
    if contact_id is not None:
        query = query.where(RuleFiring.contact_id == contact_id)
    return list(session.scalars(query))
