"""The Django app config (``INSTALLED_APPS = [..., "flagstaff.integrations.django"]``)."""

from __future__ import annotations

from django.apps import AppConfig


class FlagstaffConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    name = "flagstaff.integrations.django"
    label = "flagstaff"
    verbose_name = "flagstaff feature flags"
