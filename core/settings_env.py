"""Settings as environment variables, for the child processes a command starts.

A child (``churnstream worker`` run by the demo, a test or a benchmark) reads its settings
from the environment. :func:`settings_environment` writes every field of a settings object
into its variable, so the child sees exactly the parent's settings, whatever the parent's
own environment holds.

Conventions: a field that is ``None`` unsets its variable; secrets are written in clear;
mappings (e.g. ``CHURN_PLAN_VALUES``) are written as JSON, as they are read back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from core.settings import env_var_name


def settings_variables(settings: BaseSettings) -> dict[str, str | None]:
    """Each setting's environment variable and its value as text (None: leave unset).

    >>> from core.settings import Settings
    >>> variables = settings_variables(Settings(_env_file=None, topic_partitions=3))
    >>> variables["CHURN_TOPIC_PARTITIONS"], variables["CHURN_AS_OF"]
    ('3', None)
    """
    settings_class = type(settings)
    variables: dict[str, str | None] = {}
    for name in settings_class.model_fields:
        value = getattr(settings, name)
        if value is None:
            text = None
        elif isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, dict):
            text = json.dumps(value)
        else:
            text = str(value)
        variables[env_var_name(name, settings_class)] = text
    return variables


def settings_environment(
    settings: BaseSettings,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An environment for a child process: ``base`` (default: this process's environment)
    with every setting of ``settings`` in its variable, then ``extra`` on top.

    >>> from core.settings import Settings
    >>> env = settings_environment(Settings(_env_file=None, redis_key_prefix="t1"), base={})
    >>> env["CHURN_REDIS_KEY_PREFIX"], "CHURN_AS_OF" in env
    ('t1', False)
    """
    env = dict(os.environ if base is None else base)
    for variable, text in settings_variables(settings).items():
        if text is None:
            env.pop(variable, None)
        else:
            env[variable] = text
    env.update(extra or {})
    return env
