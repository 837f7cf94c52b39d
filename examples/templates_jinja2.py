"""Jinja2 templates asking for flags, outside any web framework.

``install(env)`` adds the ``feature`` global and the ``flag_enabled`` test.
They answer for the current scope: here one ``with client.scope(...)`` per
user, as a background job rendering e-mails would do.

Run: python examples/templates_jinja2.py
"""

import jinja2

import flagstaff
from flagstaff.admin import Admin
from flagstaff.integrations.jinja2 import install
from flagstaff.stores import open_store

store = open_store("memory://jinja2-example")
Admin(store).set("weekly_digest_v2", {"users": ["alice"], "variants": ["compact"]})
client = flagstaff.connect(store)

env = install(jinja2.Environment(autoescape=True))
email = env.from_string(
    "Hi {{ name }}: {% if 'weekly_digest_v2' is flag_enabled %}"
    "the new digest ({{ feature.variant('weekly_digest_v2') }}){% else %}the classic digest{% endif %}"
)

for name in ("alice", "bob"):
    with client.scope({"user_id": name}):
        print(email.render(name=name))
client.close()
