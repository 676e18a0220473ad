pytest_plugins = ["tests.fake_provider", "tests.loop_brain"]
