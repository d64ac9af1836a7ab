"""Templates and rendering, the 24-hour window, provider adapters, rate limiting, sending."""
