"""Report queries: funnels, failures, time series, drill-down, export, retargeting. Every
report reads the counters and rollups the ledger keeps in step (never the raw events), and
`verify` recounts them from the ledger."""
