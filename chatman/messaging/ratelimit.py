"""A token bucket per sender in Redis, shared by every worker process."""

from __future__ import annotations

import time

from redis import Redis

# KEYS[1] bucket; ARGV rate/s, burst, now (s), wanted. Returns tokens granted (maybe 0).
_TAKE = """
local rate, burst, now, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], 60)
return granted
"""


class RateLimiter:
    def __init__(self, connection: Redis, sender: str, per_second: float) -> None:
        self.key = f"chatman:ratelimit:{sender}"
        self.rate = per_second
        self.burst = max(1.0, per_second)
        self.script = connection.register_script(_TAKE)

    def acquire(self, wanted: int) -> int:
        """Block until at least one token is free; return how many of `wanted` were granted."""
        if self.rate <= 0:  # 0 lifts the limit
            return wanted
        while True:
            granted = int(self.script(keys=[self.key], args=[self.rate, self.burst, time.time(), wanted]))
            if granted:
                return granted
            time.sleep(min(0.05, 1 / self.rate))
