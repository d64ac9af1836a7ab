"""Conversation flows: ask, wait for the reply, validate, save to an attribute, branch."""
