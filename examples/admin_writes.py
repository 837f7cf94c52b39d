"""Change flags through the validated write path: ramp up, kill, restore, and read the history.

Every write is validated first and applied with compare-and-set; this is what the
``flagstaff`` CLI does. Run: python examples/admin_writes.py
"""

from flagstaff.admin import Admin
from flagstaff.errors import ValidationError
from flagstaff.stores import open_store

store = open_store("memory://")
admin = Admin(store, author="release-bot")

for percent in (1, 10, 50):
    admin.rollout("fast_checkout", percent, create=True)  # a new flag: say so
admin.add_user("fast_checkout", "qa-lead")
admin.disable("fast_checkout")  # the kill switch: off for everyone, targeting kept
admin.enable("fast_checkout")  # back exactly as it was

try:
    admin.set("fast_checkout", {"percentage": 150})
except ValidationError as exc:
    print("refused:", exc)

for entry in reversed(store.history("fast_checkout")):
    print(f"v{entry.version} by {entry.author}: {entry.after}")
store.close()
