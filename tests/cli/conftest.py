from helpers.runs import tiny_config, tiny_config_file  # noqa: F401 - fixtures
