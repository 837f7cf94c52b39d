"""A scheduled flag: on for everyone from midnight UTC, decided by each request's own time.

Run: python examples/schedule_at_midnight.py
"""

from datetime import UTC, datetime

from flagstaff import Context, evaluate, parse_flag

flag = parse_flag("new_year_banner", {"everyone": True, "schedule": {"start": "2027-01-01T00:00:00Z"}})

for when in (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)):
    d = evaluate(flag, Context(user_id="u1", time=when))
    print(f"{when.isoformat()}  enabled={d.enabled}  reason={d.reason.value}")
