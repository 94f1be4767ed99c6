from tests.helpers import *  # noqa: F401,F403  shared fixtures: e3 runner, temp projects
