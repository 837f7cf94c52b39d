"""A Flask app whose code checks flags without passing a user around.

The extension builds each request's context (here from ``?user=``; a real app
reads its session) and pins one snapshot per request; ``flags`` and the
``feature`` template global answer for that request.

Run: python examples/web_flask.py         (three requests through Flask's test client)
     python examples/web_flask.py serve   (then open http://127.0.0.1:8001/?user=alice)
"""

import sys

from flask import Flask, render_template_string

import flagstaff
from flagstaff.admin import Admin
from flagstaff.integrations import flags
from flagstaff.integrations.flask import Flagstaff
from flagstaff.stores import open_store

# Each web example's `serve` has its own port, clear of `flagstaff serve` (8000).
PORT = 8001

store = open_store("memory://flask-example")
Admin(store).set("new_checkout", {"users": ["alice"]})
Admin(store).set("dark_mode", {"groups": ["beta"]})
client = flagstaff.connect(store)

app = Flask(__name__)


def who(request):
    user = request.args.get("user")
    return {"user_id": user, "groups": ["beta"] if user == "bob" else []} if user else None


Flagstaff(app, client, context=who)

PAGE = "{% if feature.is_enabled('dark_mode') %}dark{% else %}light{% endif %} page, {{ button }} checkout"


def checkout_button():  # far from the view: no client, no user passed in
    return "new" if flags.is_enabled("new_checkout") else "old"


@app.get("/")
def home():
    return render_template_string(PAGE, button=checkout_button())


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        app.run(port=PORT)
    else:
        web = app.test_client()
        for query in ("?user=alice", "?user=bob", ""):
            print(f"GET /{query:<12} -> {web.get('/' + query).text}")
    client.close()
