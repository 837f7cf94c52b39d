"""Mako templates in reddit's style: ``feature.is_enabled('x')`` inside the template.

A plain WSGI app behind ``FlagsMiddleware``; the template gets ``feature``
from ``flagstaff.integrations.mako.IMPORTS`` and it answers for the request.

Run: python examples/templates_mako.py         (three requests, called in-process)
     python examples/templates_mako.py serve   (then open http://127.0.0.1:8000/?user=alice)
"""

import sys
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server
from wsgiref.util import setup_testing_defaults

from mako.template import Template

import flagstaff
from flagstaff.admin import Admin
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


app = FlagsMiddleware(site, client, context=who)

if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        make_server("127.0.0.1", 8000, app).serve_forever()
    else:
        for query in ("user=alice", "user=bob", "feature=sidebar"):
            environ = {"QUERY_STRING": query}
            setup_testing_defaults(environ)
            body = b"".join(app(environ, lambda status, headers: None)).decode()
            print(f"GET /?{query:<16} -> {body}")
    client.close()
