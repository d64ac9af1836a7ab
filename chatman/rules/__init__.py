"""Post-campaign rules: what to do when a campaign message was delivered, read, failed,
replied to or had a button tapped, once per rule and message."""
