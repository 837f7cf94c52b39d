from flagstaff import Context, Reason, evaluate, parse_flag


def test_reddit_readme_some_flag_experiment() -> None:
    # reddit README: t2_1j has bucket 142; 142 % 4 == 2 -> test_something; 142 < 5.5*4*10
    flag = parse_flag(
        "some_flag",
        {
            "bucketing": "reddit",
            "experiment": {
                "loggedin": True,
                "experiment_id": 12345,
                "variants": {"test_something": 5.5, "test_something_else": 10},
            },
        },
    )
    decision = evaluate(flag, Context(user_id="t2_1j"))
    assert decision.reason is Reason.EXPERIMENT
    assert decision.variant == "test_something"
    assert decision.experiment_id == 12345
