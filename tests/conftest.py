pytest_plugins = ["tests.fake_provider", "tests.loop_brain", "tests.redis_server"]
