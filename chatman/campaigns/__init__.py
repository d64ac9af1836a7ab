"""Campaign kinds, schedules, runs, audience freeze, dispatch."""
