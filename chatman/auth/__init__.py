"""Marketers' logins and API tokens."""
