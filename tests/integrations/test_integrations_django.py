"""The Django app: middleware, FLAGSTAFF settings, template tags, through Django's
test client with settings configured here and a real (in-memory SQLite) auth database."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="flagstaff-test",  # a test-only key
        ALLOWED_HOSTS=["testserver", ".example.com"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "flagstaff.integrations.django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "flagstaff.integrations.django.middleware.FlagstaffMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        USE_TZ=True,
    )
    django.setup()

from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import Context as TemplateContext
from django.template import Template, TemplateSyntaxError, engines
from django.template.response import TemplateResponse
from django.test import AsyncClient, override_settings
from django.test import Client as DjangoClient
from django.test.utils import setup_test_environment, teardown_test_environment
from django.urls import path

from flagstaff.forcing import sign
from flagstaff.integrations import flags
from flagstaff.integrations.django import get_client, load_settings, user_context
from tests._support.web import FLAGS, FlagWorld, flag_world, serve_wsgi

pytestmark = pytest.mark.timeout(120)

KEY = "django-test-forcing-key-01234567"  # a test-only key

TEMPLATE = (
    "{% load flagstaff %}"
    '{% ifflag "alice_only" %}A{% else %}-{% endifflag %}'
    '{% if "beta_group"|flag_enabled %}B{% else %}-{% endif %}'
    '{% flag_variant "theme" as theme %}{{ theme|default:"classic" }}'
    '{% ifflag "staff_only" %}S{% endifflag %}'
)


def far_away() -> dict[str, Any]:
    scope = flags.scope
    assert scope is not None
    return {
        "user": scope.context.user_id,
        "user_name": scope.context.user_name,
        "groups": sorted(scope.context.groups),
        "cookie": scope.context.cookie_id,
        "alice_only": flags.is_enabled("alice_only"),
        "forced": flags.is_enabled("forced"),
        "on_beta_subdomain": flags.is_enabled("on_beta_subdomain"),
    }


def home(request: HttpRequest) -> HttpResponse:
    assert request.flagstaff is flags.scope  # type: ignore[attr-defined]
    return JsonResponse(far_away())


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(Template(TEMPLATE).render(TemplateContext({})))


def lazy_page(request: HttpRequest) -> TemplateResponse:
    # Rendered after the view returns, by the handler: still inside the scope.
    return TemplateResponse(request, engines["django"].from_string(TEMPLATE), {})


async def async_view(request: HttpRequest) -> HttpResponse:
    # An async view under Django's async handler: Django runs the (sync) middleware
    # in a thread and the view on the loop, and the scope travels with the request.
    await asyncio.sleep(0)
    return JsonResponse(far_away())


BARRIER = threading.Barrier(4)


def together(request: HttpRequest) -> HttpResponse:
    first = far_away()
    BARRIER.wait(timeout=30)  # every request is in flight here
    return JsonResponse({"first": first, "second": far_away()})


urlpatterns = [
    path("", home),
    path("page", page),
    path("lazy", lazy_page),
    path("together", together),
    path("async", async_view),
]


@pytest.fixture(scope="module")
def database() -> Iterator[None]:
    setup_test_environment()
    call_command("migrate", verbosity=0, interactive=False)
    beta = Group.objects.create(name="beta")
    alice = User.objects.create_user("alice", password="pw")
    alice.groups.add(beta)
    User.objects.create_user("sam", password="pw", is_staff=True)
    yield
    teardown_test_environment()


@pytest.fixture
def world(database: None) -> Iterator[FlagWorld]:
    # "users" selectors match user names too: Django's user ids are database keys.
    with (
        flag_world({**FLAGS, "staff_only": {"employee": True}}) as w,
        override_settings(FLAGSTAFF={"CLIENT": w.client, "DOMAIN": "example.com", "FORCE_KEY": KEY}),
    ):
        yield w


def logged_in(name: str | None) -> DjangoClient:
    web = DjangoClient()
    if name is not None:
        web.force_login(User.objects.get(username=name))
    return web


def test_the_default_hook_reads_the_django_user(world: FlagWorld) -> None:
    seen = logged_in("alice").get(f"/?feature={sign('try_forced', KEY, 60)}").json()
    alice = User.objects.get(username="alice")
    assert seen["user"] == str(alice.pk) and seen["user_name"] == "alice"
    assert seen["groups"] == ["beta"]
    assert seen["alice_only"] is True and seen["forced"] is True
    assert logged_in("sam").get("/").json()["groups"] == ["employee"]
    anonymous = logged_in(None).get("/").json()
    assert anonymous["user"] is None and anonymous["alice_only"] is False


def test_templates_use_the_tag_library(world: FlagWorld) -> None:
    assert logged_in("alice").get("/page").content == b"ABdark"
    assert logged_in("sam").get("/page").content == b"--classicS"
    assert logged_in(None).get("/lazy").content == b"--classic"
    assert logged_in("alice").get("/lazy").content == b"ABdark"


def test_visitor_cookie_and_subdomain(world: FlagWorld) -> None:
    web = logged_in(None)
    response = web.get("/", headers={"host": "beta.example.com"})
    cookie = response.cookies["flagstaff_id"]
    assert cookie.value == response.json()["cookie"] and cookie["httponly"] and cookie["samesite"] == "Lax"
    assert response.json()["on_beta_subdomain"] is True
    again = web.get("/")
    assert again.json()["cookie"] == cookie.value and "flagstaff_id" not in again.cookies
    assert again.json()["on_beta_subdomain"] is False


def hook_from_header(request: HttpRequest) -> dict[str, Any]:
    return {"user_id": request.headers.get("X-User"), "location": "aww"}


def test_only_signed_tokens_force_unless_unsigned_forcing(world: FlagWorld) -> None:
    assert logged_in(None).get("/?feature=try_forced").json()["forced"] is False
    assert logged_in(None).get("/", {"feature": sign("try_forced", "x" * 16, 60)}).json()["forced"] is False
    conf = {"CLIENT": world.client, "UNSIGNED_FORCING": True, "FORCE_KEY": None}
    with override_settings(FLAGSTAFF=conf):
        assert logged_in(None).get("/?feature=try_forced").json()["forced"] is True


def test_a_custom_hook_by_dotted_path(world: FlagWorld) -> None:
    conf = {"CLIENT": world.client, "CONTEXT": f"{__name__}.hook_from_header", "COOKIE": "loid"}
    with override_settings(FLAGSTAFF=conf):
        response = logged_in(None).get("/", headers={"X-User": "alice"})
    assert response.json()["user"] == "alice" and response.json()["alice_only"] is True
    assert "loid" in response.cookies


def test_the_client_from_a_store_url_is_opened_once(world: FlagWorld) -> None:
    conf = {"STORE": world.store.url, "TIMEOUT": 5}
    first = get_client(conf)
    try:
        assert get_client(conf) is first
        assert first.is_enabled("everyone") is True
        with override_settings(FLAGSTAFF=conf):
            assert load_settings().client is first
    finally:
        first.close()


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({}, "needs 'STORE'"),
        ({"STORE": "memory://x", "SURPRISE": 1}, "unknown FLAGSTAFF keys: SURPRISE"),
        ({"CLIENT": "os.path"}, "must be a flagstaff.Client"),
        ({"CLIENT": "no.such.module.client"}, "cannot import"),
        ({"STORE": "memory://x", "CONTEXT": 42}, "must be a callable"),
        ({"STORE": "memory://x", "COOKIE": "bad name"}, "cookie name"),
        (
            {"STORE": "memory://x", "FORCE_KEY": "short"},
            "force_key is 5 bytes; a forcing key needs at least 16",
        ),
    ],
)
def test_bad_settings_are_a_clear_error(database: None, conf: dict[str, Any], message: str) -> None:
    with override_settings(FLAGSTAFF=conf), pytest.raises(ImproperlyConfigured, match=message):
        load_settings()


def test_ifflag_needs_one_argument(database: None) -> None:
    with pytest.raises(TemplateSyntaxError, match="takes one argument"):
        Template("{% load flagstaff %}{% ifflag %}x{% endifflag %}")


def test_concurrent_requests_on_a_real_threaded_server(world: FlagWorld) -> None:
    users = ["alice", "bob", "carol", "dave"]
    assert BARRIER.parties == len(users)
    conf = {"CLIENT": world.client, "CONTEXT": f"{__name__}.hook_from_header"}
    with override_settings(FLAGSTAFF=conf), serve_wsgi(WSGIHandler()) as base:

        def one(user: str) -> dict[str, Any]:
            request = urllib.request.Request(f"{base}/together", headers={"X-User": user})
            with urllib.request.urlopen(request, timeout=60) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result

        with ThreadPoolExecutor(len(users)) as pool:
            results = dict(zip(users, pool.map(one, users), strict=True))
    for user, body in results.items():
        for seen in (body["first"], body["second"]):
            assert seen["user"] == user and seen["alice_only"] is (user == "alice")


def test_async_views_under_the_asgi_handler(world: FlagWorld) -> None:
    conf = {"CLIENT": world.client, "CONTEXT": f"{__name__}.hook_from_header"}

    async def main() -> list[dict[str, Any]]:
        web = AsyncClient()
        responses = await asyncio.gather(
            *(web.get("/async", headers={"X-User": user}) for user in ("alice", "bob", "carol"))
        )
        return [r.json() for r in responses]

    with override_settings(FLAGSTAFF=conf):
        seen = asyncio.run(main())
    assert [s["user"] for s in seen] == ["alice", "bob", "carol"]
    assert [s["alice_only"] for s in seen] == [True, False, False]


def test_user_context_for_a_request_without_a_user() -> None:
    assert user_context(HttpRequest()) == {}
