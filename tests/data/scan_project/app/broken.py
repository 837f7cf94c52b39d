def broken(:
    client.is_enabled("hidden_by_the_syntax_error")
