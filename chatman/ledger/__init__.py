"""The per-recipient ledger: message rows, their state machine, status events, counters."""
