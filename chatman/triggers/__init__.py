"""Triggered campaigns: inbound intent matching, external events, and what they start."""
