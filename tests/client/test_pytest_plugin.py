"""The pytest plugin (entry point pytest11), run inside pytester sessions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.flagstaff(**flags): pin flags*"])


def test_default_client_and_pins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from flagstaff import Reason, ValidationError

        def test_pin(flagstaff_flags):
            client = flagstaff_flags.client
            assert not client.is_enabled("checkout")
            flagstaff_flags.pin(checkout="on", color="variant:blue", ramp=100)
            flagstaff_flags["doc"] = {"users": ["alice"]}
            d = client.evaluate("checkout")
            assert (d.enabled, d.reason, d.rule) == (True, Reason.OVERRIDE, "pytest")
            assert client.variant("color", "u1") == "blue"
            assert client.is_enabled("ramp", "u1")
            assert client.is_enabled("doc", "alice") and not client.is_enabled("doc", "bob")
            flagstaff_flags.unpin("checkout")
            assert client.evaluate("checkout").reason is Reason.UNKNOWN_FLAG

        def test_bad_value(flagstaff_flags):
            with pytest.raises(ValidationError, match="percentage"):
                flagstaff_flags.pin(ramp=101)
            assert dict(flagstaff_flags.client.overrides) == {}
        """
    )
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=2)


def test_pins_are_restored_on_the_apps_client(pytester: pytest.Pytester, tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"checkout": "off", "banner": "on"}))
    pytester.makeconftest(
        f"""
        import pytest
        import flagstaff
        from flagstaff.overrides import install

        APP = flagstaff.connect("file://{flags}", timeout=5)
        install(APP, environ={{"FLAGSTAFF_OVERRIDES": "banner=off"}})  # a developer's shell

        @pytest.fixture
        def flagstaff_client():
            return APP

        def pytest_unconfigure(config):
            APP.close()
        """
    )
    pytester.makepyfile(
        f"""
        import json
        import pytest
        from conftest import APP
        from flagstaff import Reason

        def test_1_pin_then_fail(flagstaff_flags):
            flagstaff_flags.pin(checkout="on", banner="on")
            assert APP.is_enabled("checkout") and APP.is_enabled("banner")
            raise AssertionError("boom")

        def test_2_restored():
            assert not APP.is_enabled("checkout")
            assert APP.evaluate("checkout").reason is Reason.OFF
            assert APP.evaluate("banner").rule == "FLAGSTAFF_OVERRIDES"
            assert json.loads(open({str(flags)!r}).read()) == {{"checkout": "off", "banner": "on"}}

        @pytest.mark.flagstaff(checkout="on", banner="variant:b")
        class TestMarked:
            @pytest.mark.flagstaff(banner="off")
            def test_3_closest_marker_wins(self, flagstaff_flags):
                assert APP.is_enabled("checkout") and not APP.is_enabled("banner")
                assert APP.evaluate("banner").rule == "pytest"

        def test_4_restored_after_marker():
            assert not APP.is_enabled("checkout")
        """
    )
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["E       AssertionError: boom"])


def test_old_module_path_still_serves_the_plugin() -> None:
    # The plugin moved to flagstaff.testing.pytest_plugin; an install whose entry point still
    # names flagstaff.pytest_plugin gets the same fixtures and hook from the old path.
    from flagstaff import pytest_plugin as old
    from flagstaff.testing import pytest_plugin as new

    for name in ("FlagPins", "flagstaff_client", "flagstaff_flags", "pytest_configure"):
        assert getattr(old, name) is getattr(new, name), name
