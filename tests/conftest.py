pytest_plugins = ["tests.fake_provider"]
