"""The `deliveryhub` command: start, migrate, issue tokens, run the demo."""
