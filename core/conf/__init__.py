"""qloop's configuration: load, validate and mask the YAML file.

Typical use::

    from core.conf import ConfigError, format_problems, load_config

    try:
        cfg = load_config("qloop.yaml")
    except ConfigError as err:
        print(format_problems(err))
"""

from core.conf.loader import (
    Interpolated,
    LineIndex,
    PathKey,
    config_error,
    dotted,
    format_problems,
    interpolate,
    load_yaml,
    read_yaml,
)
from core.conf.masking import (
    MASK,
    is_secret_name,
    is_secret_path,
    mask,
    mask_text,
    mask_url,
    secret_paths_of,
    secret_values,
)
from core.conf.model import (
    AppConfig,
    CalendarConfig,
    ChannelConfig,
    SourceConfig,
    build_calendar,
    parse_hours,
    parse_spans,
    parse_tracking_from,
    policy_rules,
    policy_version,
)
from core.conf.validate import load_config, top_schema, validate
from core.errors import ConfigError, Problem

__all__ = [
    "MASK",
    "AppConfig",
    "CalendarConfig",
    "ChannelConfig",
    "ConfigError",
    "Interpolated",
    "LineIndex",
    "PathKey",
    "Problem",
    "SourceConfig",
    "build_calendar",
    "config_error",
    "dotted",
    "format_problems",
    "interpolate",
    "is_secret_name",
    "is_secret_path",
    "load_config",
    "load_yaml",
    "mask",
    "mask_text",
    "mask_url",
    "parse_hours",
    "parse_spans",
    "parse_tracking_from",
    "policy_rules",
    "policy_version",
    "read_yaml",
    "secret_paths_of",
    "secret_values",
    "top_schema",
    "validate",
]
