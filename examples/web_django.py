"""A one-file Django site using the flagstaff app: middleware, settings, template tags.

settings hold ``FLAGSTAFF`` (here a ready client and a context hook reading
``?user=``; a real site names a store URL and keeps the default hook, which
reads ``request.user``). Templates ``{% load flagstaff %}``.

Run: python examples/web_django.py         (three requests through Django's test client)
     python examples/web_django.py serve   (then open http://127.0.0.1:8002/?user=alice)
"""

import sys
from wsgiref.simple_server import make_server

import django
from django.conf import settings
from django.http import HttpResponse
from django.template import engines
from django.urls import path

import flagstaff
from flagstaff.admin import Admin
from flagstaff.stores import open_store

# Each web example's `serve` has its own port, clear of `flagstaff serve` (8000).
PORT = 8002

store = open_store("memory://django-example")
Admin(store).set("new_checkout", {"users": ["alice"]})
Admin(store).set("dark_mode", {"groups": ["beta"]})
client = flagstaff.connect(store)


def who(request):
    user = request.GET.get("user")
    return {"user_id": user, "groups": ["beta"] if user == "bob" else []} if user else None


settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["flagstaff.integrations.django"],
    MIDDLEWARE=["flagstaff.integrations.django.middleware.FlagstaffMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    FLAGSTAFF={"CLIENT": client, "CONTEXT": who},
)
django.setup()

PAGE = engines["django"].from_string(
    "{% load flagstaff %}"
    "{% ifflag 'dark_mode' %}dark{% else %}light{% endifflag %} page, "
    "{% if 'new_checkout'|flag_enabled %}new{% else %}old{% endif %} checkout"
)


def home(request):
    return HttpResponse(PAGE.render({}, request))


urlpatterns = [path("", home)]

if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        from django.core.wsgi import get_wsgi_application

        make_server("127.0.0.1", PORT, get_wsgi_application()).serve_forever()
    else:
        from django.test import Client

        web = Client()
        for query in ("?user=alice", "?user=bob", ""):
            print(f"GET /{query:<12} -> {web.get('/' + query).content.decode()}")
    client.close()
