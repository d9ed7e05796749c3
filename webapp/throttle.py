"""Failed authentication, counted in Redis per account and per client address.

A fixed window on the app clock (`webapp.clock.now`): key `throttle:<rule>:<who>:<window#>`,
incremented on each failure and expiring with its window. Once a count reaches its limit,
every attempt (the right password too) is refused until the window ends, so guessing costs
time. When Redis is unreachable the throttle lets everything through (fails open) and logs:
signing in must not depend on it.
"""

import hashlib
import logging
import math
from dataclasses import dataclass

import redis
from flask import current_app

from webapp import redis_conn
from webapp.clock import now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    name: str
    limit_setting: str  # config key: failures allowed per window
    window_setting: str  # config key: the window, in seconds

    @property
    def limit(self) -> int:
        return int(current_app.config[self.limit_setting])

    @property
    def window(self) -> int:
        return max(1, int(current_app.config[self.window_setting]))


SIGN_IN_ACCOUNT = Rule("sign-in:account", "THROTTLE_SIGN_IN_PER_ACCOUNT", "THROTTLE_SIGN_IN_WINDOW")
SIGN_IN_ADDRESS = Rule("sign-in:address", "THROTTLE_SIGN_IN_PER_ADDRESS", "THROTTLE_SIGN_IN_WINDOW")
API_AUTH_ADDRESS = Rule("api-auth:address", "THROTTLE_API_AUTH_PER_ADDRESS",
                        "THROTTLE_API_AUTH_WINDOW")


def sign_in_checks(email: str, address: str) -> tuple[tuple[Rule, str], tuple[Rule, str]]:
    """What a sign-in with a password counts against (the form and `POST /auth/login/`): the
    account first (forgotten on success), then the client address."""
    return (SIGN_IN_ACCOUNT, email), (SIGN_IN_ADDRESS, address)


def _key(rule: Rule, who: str) -> tuple[str, float]:
    """The window's key and the seconds left in it."""
    moment = now().timestamp()
    window = rule.window
    number = int(moment // window)
    # Hashed: keys stay short and Redis holds no email addresses.
    digest = hashlib.sha256(who.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
    return f"throttle:{rule.name}:{digest}:{number}", (number + 1) * window - moment


def retry_after(*checks: tuple[Rule, str]) -> int:
    """Seconds until the caller may try again (0: go ahead): the longest wait of the windows
    whose count reached its limit. 0 when Redis cannot be reached."""
    keys = [(_key(rule, who), rule.limit) for rule, who in checks]
    try:
        counts = redis_conn.connection().mget([key for (key, _left), _limit in keys])
    except redis.RedisError as error:
        log.warning("throttle: Redis unreachable, not throttling (%s)", error)
        return 0
    waits = [math.ceil(left) for ((_key_, left), limit), count in zip(keys, counts, strict=True)
             if count is not None and int(count) >= limit]
    return max(waits, default=0)


def note_failure(*checks: tuple[Rule, str]) -> None:
    """Count one failed attempt in each rule's current window."""
    try:
        pipe = redis_conn.connection().pipeline(transaction=False)
        for rule, who in checks:
            key, left = _key(rule, who)
            pipe.incr(key)
            pipe.expire(key, math.ceil(left) + 1)
        pipe.execute()
    except redis.RedisError as error:
        log.warning("throttle: Redis unreachable, failure not counted (%s)", error)


def forget(rule: Rule, who: str) -> None:
    """Clear the rule's current count (a successful sign-in clears its account's failures)."""
    try:
        redis_conn.connection().delete(_key(rule, who)[0])
    except redis.RedisError as error:
        log.warning("throttle: Redis unreachable (%s)", error)


def in_words(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
