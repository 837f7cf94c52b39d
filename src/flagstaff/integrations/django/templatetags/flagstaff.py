"""Template tags: ``{% load flagstaff %}``.

::

    {% load flagstaff %}
    {% ifflag "new_sidebar" %}<aside class="v2">…</aside>{% else %}<aside>…</aside>{% endifflag %}
    {% if "new_sidebar"|flag_enabled %}…{% endif %}
    {% flag_variant "theme" as theme %}<body class="{{ theme|default:'classic' }}">

Each answers for the request being served (its scope), through
:data:`flagstaff.integrations.flags`; none of them raises.
"""

from __future__ import annotations

from typing import Any

from django import template

from flagstaff.integrations.current import flags

register = template.Library()


def flag_enabled(name: Any) -> bool:
    """``{% if "x"|flag_enabled %}``: whether flag ``x`` is on for this request."""
    return flags.is_enabled(str(name))


def flag_variant(name: Any) -> str | None:
    """``{% flag_variant "x" as v %}``: flag ``x``'s variant for this request."""
    return flags.variant(str(name))


class IfFlagNode(template.Node):  # type: ignore[misc]  # Django ships no type information
    def __init__(self, name: Any, on: Any, off: Any) -> None:
        self.name = name
        self.on = on
        self.off = off

    def render(self, context: Any) -> str:
        branch = self.on if flags.is_enabled(str(self.name.resolve(context))) else self.off
        rendered: str = branch.render(context)
        return rendered


def ifflag(parser: Any, token: Any) -> IfFlagNode:
    """``{% ifflag "x" %}…{% else %}…{% endifflag %}``."""
    bits = token.split_contents()
    if len(bits) != 2:
        raise template.TemplateSyntaxError(f"{bits[0]!r} takes one argument: the flag name")
    name = parser.compile_filter(bits[1])
    on = parser.parse(("else", "endifflag"))
    if parser.next_token().contents == "else":
        off = parser.parse(("endifflag",))
        parser.delete_first_token()
    else:
        off = template.NodeList()
    return IfFlagNode(name, on, off)


# Registered by calls, not decorators: Django's decorators are untyped.
register.filter("flag_enabled", flag_enabled)
register.simple_tag(flag_variant, name="flag_variant")
register.tag("ifflag", ifflag)
