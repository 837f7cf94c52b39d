"""Mako templates in reddit's style: ``feature.is_enabled('x')`` inside the template.

A plain WSGI app behind ``FlagsMiddleware``; the template gets ``feature``
from ``flagstaff.integrations.mako.IMPORTS`` and it answers for the request.

The third request forces the flag with a signed ``?feature=`` token (the url selector
``sidebar``): a plain ``?feature=sidebar`` would force nothing, since anyone can type it.

Run: python examples/templates_mako.py         (three requests, called in-process)
     python examples/templates_mako.py serve   (then open http://127.0.0.1:8000/?user=alice)
"""

import sys
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server
from wsgiref.util import setup_testing_defaults

from mako.template import Template

import flagstaff
from flagstaff import forcing
from flagstaff.admin import Admin
from flagstaff.integrations import RequestOptions
from flagstaff.integrations.mako import IMPORTS
from flagstaff.integrations.wsgi import FlagsMiddleware
from flagstaff.stores import open_store

store = open_store("memory://mako-example")
Admin(store).set("new_sidebar", {"users": ["alice"], "url": "sidebar"})
client = flagstaff.connect(store)

PAGE = Template(
    """\
%if feature.is_enabled('new_sidebar'):
new sidebar\\
%else:
old sidebar\\
%endif
""",
    imports=IMPORTS,
)


def site(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [PAGE.render().encode()]


def who(environ):  # a real app reads its session here
    user = parse_qs(environ.get("QUERY_STRING", "")).get("user", [None])[0]
    return {"user_id": user} if user else None


KEY = "example-forcing-key-keep-it-secret"  # a real site reads $FLAGSTAFF_FORCE_KEY
app = FlagsMiddleware(site, client, context=who, options=RequestOptions(force_key=KEY))

if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        make_server("127.0.0.1", 8000, app).serve_forever()
    else:
        token = forcing.sign("sidebar", KEY, ttl=3600)  # what `flagstaff force-token sidebar` prints
        for shown, query in (
            ("user=alice", "user=alice"),
            ("user=bob", "user=bob"),
            ("feature=sidebar", "feature=sidebar"),
            ("feature=<token>", f"feature={token}"),
        ):
            environ = {"QUERY_STRING": query}
            setup_testing_defaults(environ)
            body = b"".join(app(environ, lambda status, headers: None)).decode()
            print(f"GET /?{shown:<16} -> {body}")
    client.close()
