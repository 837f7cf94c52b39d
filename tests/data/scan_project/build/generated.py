client.is_enabled("built_flag")  # build/ is skipped
