pytest_plugins = [
    "tests.support.browser",
    "tests.support.fake_provider",
    "tests.support.loop_brain",
    "tests.support.redis_server",
]
