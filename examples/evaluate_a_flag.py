"""Evaluate one flag document for a few people, and see why each got their answer.

Run: python examples/evaluate_a_flag.py
"""

from flagstaff import Context, evaluate, parse_flag

flag = parse_flag(
    "new_editor",
    {
        "description": "The new editor: staff first, then 10% of logged-in users",
        "employee": True,
        "users": ["alice"],
        "percent_loggedin": 10,
    },
)

people = {
    "alice (named in users)": Context(user_id="alice"),
    "an employee": Context(user_id="e17", groups=frozenset({"employee"})),
    "a logged-in user": Context(user_id="u42"),
    "a logged-out visitor": Context(cookie_id="c0ffee"),
}
for who, ctx in people.items():
    d = evaluate(flag, ctx)
    print(f"{who:24} enabled={d.enabled!s:5} reason={d.reason.value} rule={d.rule}")
