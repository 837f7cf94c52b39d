"""Template helpers: Jinja2 environments and Mako lookups ask ``feature`` inside templates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from mako.template import Template

from flagstaff.integrations import flags
from flagstaff.integrations import jinja2 as fs_jinja2
from flagstaff.integrations import mako as fs_mako
from tests._support.web import FlagWorld, flag_world

pytestmark = pytest.mark.timeout(60)

JINJA = (
    "{% if feature.is_enabled('alice_only') %}A{% else %}-{% endif %}"
    "{{ feature.variant('theme') or 'classic' }}"
    "{% if 'beta_group' is flag_enabled %}B{% else %}-{% endif %}"
)

# reddit's style: templates call feature.is_enabled('x') directly.
MAKO = """\
%if feature.is_enabled('alice_only'):
alice sees the new sidebar
%else:
the old sidebar
%endif
theme=${feature.variant('theme') or 'classic'}
"""


@pytest.fixture
def world() -> Iterator[FlagWorld]:
    with flag_world() as w:
        flags.use(w.client)
        yield w
        flags.use(None)


def test_jinja_answers_for_the_current_scope(world: FlagWorld) -> None:
    env = fs_jinja2.install(jinja2.Environment(autoescape=True))
    template = env.from_string(JINJA)
    with world.client.scope("alice"):
        assert template.render() == "Adark-"
    with world.client.scope({"user_id": "bob", "groups": ["beta"]}):
        assert template.render() == "-classicB"
    assert template.render() == "-classic-"  # outside a request: an anonymous visitor


def test_jinja_global_name_is_configurable(world: FlagWorld) -> None:
    env = fs_jinja2.install(jinja2.Environment(autoescape=True), name="flags")
    with world.client.scope("alice"):
        assert env.from_string("{{ flags.is_enabled('alice_only') }}").render() == "True"


def test_mako_lookup_gives_templates_feature(world: FlagWorld, tmp_path: Path) -> None:
    (tmp_path / "page.mako").write_text(MAKO)
    lookup = fs_mako.lookup([str(tmp_path)])
    page = lookup.get_template("page.mako")
    with world.client.scope("alice"):
        assert page.render().split() == ["alice", "sees", "the", "new", "sidebar", "theme=dark"]
    with world.client.scope("bob"):
        assert page.render().split() == ["the", "old", "sidebar", "theme=classic"]


def test_mako_imports_line_works_on_a_bare_template(world: FlagWorld) -> None:
    template = Template(MAKO, imports=fs_mako.IMPORTS)
    with world.client.scope("alice"):
        assert "alice sees the new sidebar" in template.render()
    assert fs_mako.feature is flags


def test_mako_lookup_keeps_the_callers_imports(world: FlagWorld, tmp_path: Path) -> None:
    (tmp_path / "t.mako").write_text("${feature.is_enabled('everyone')} ${json.dumps([1])}")
    lookup = fs_mako.lookup([str(tmp_path)], imports=["import json"])
    assert lookup.get_template("t.mako").render() == "True [1]"
