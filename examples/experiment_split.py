"""An A/B experiment: how 10,000 users split into variants, and that a user always gets the same one.

Run: python examples/experiment_split.py
"""

from collections import Counter

from flagstaff import Context, evaluate, parse_flag

flag = parse_flag(
    "checkout_button",
    {"experiment": {"experiment_id": 4201, "loggedin": True, "variants": {"green": 25, "orange": 25}}},
)

split = Counter(evaluate(flag, Context(user_id=f"user{i}")).variant for i in range(10_000))
for variant, count in sorted(split.items(), key=lambda kv: str(kv[0])):
    print(f"{variant or '(not in the experiment)':24} {count / 100:5.1f}%")

# Sticky: the same user gets the same variant in every call, process and machine.
for user in ("user1", "user2", "user3"):
    variants = {evaluate(flag, Context(user_id=user)).variant for _ in range(3)}
    print(f"{user} always gets {variants.pop()}")
