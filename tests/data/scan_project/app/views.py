"""A sample module with known flag references (see tests/test_scan.py)."""

import re

DARK_MODE = "dark_mode"  # a module constant: counts as the literal
PREFIX = "exp_"
PREFIX = "experiment_"  # assigned twice: not a constant


def checkout(client, flags, feature, rollout, scope, user, ctx, name, some_var, flag, evaluate, is_enabled):
    if client.is_enabled("new_checkout", ctx):
        pass
    flags.variant("ranker")
    feature.is_enabled("inbox_v2", user=user)
    rollout.is_fast_search(user)
    client.is_enabled(DARK_MODE)
    client.is_enabled("ghost_flag")
    client.evaluate(f"exp_{name}")
    client.is_enabled(name=some_var)
    is_enabled("new_checkout")
    rollout.is_enabled("typo_flag")
    scope.is_enabled("beta_tools")
    client.variant(PREFIX)
    # client.is_enabled("commented_out") is a comment, not a reference
    text = "client.is_enabled('in_a_string')"
    re.compile("not_a_flag")
    user.is_valid("not_a_flag")
    evaluate(flag, ctx)  # flagstaff.evaluate takes a Flag, not a name
    client.is_enabled()  # no name at all: nothing to judge
    return text
