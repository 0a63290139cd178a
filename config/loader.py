"""Build a Config: defaults in code, a YAML file laid over them, the environment last.

    load_config("conclave.yaml")                  # file over defaults, then os.environ
    load_config(env={"CONCLAVE_HTTP__PORT": "0"})  # defaults, then the given environment

Environment variables are named CONCLAVE_<SECTION>__<KEY> (CONCLAVE_SFU__WORKERS=4) or
CONCLAVE_<KEY> for top-level keys (CONCLAVE_DATA_DIR); lists are comma-separated
(CONCLAVE_SFU__ANNOUNCED_IPS=1.2.3.4,5.6.7.8). CONCLAVE_CONFIG is not a setting: it names
the YAML file when no path is given.

Unknown keys and unknown CONCLAVE_ variables are errors, as are values of the wrong type
or out of range. A ConfigError lists every such problem, one per line, each naming where
it came from (the file and key path, or the variable) and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from config.schema import BadValue, Config, ConfigError, Rule, SfuConfig

ENV_PREFIX = "CONCLAVE_"
CONFIG_PATH_VAR = "CONCLAVE_CONFIG"

# Checked values before they become dataclasses: {"data_dir": "...", "http": {"port": 80}}.
Values = dict[str, Any]


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Return the Config made of the defaults, the YAML file at `path`, then `env`.

    path: the YAML file; None: the file named by $CONCLAVE_CONFIG, or no file at all.
    env:  the environment to read overrides from; None: os.environ.
    Raises ConfigError naming every bad key or value.
    """
    env = os.environ if env is None else env
    if path is None:
        path = env.get(CONFIG_PATH_VAR) or None
    problems: list[str] = []
    values: Values = {}
    if path is not None:
        _merge(values, _values_from_file(os.fspath(path), problems))
    _merge(values, _values_from_env(env, problems))
    if problems:
        raise ConfigError("\n".join(problems))
    return _build(values)


def resolved_workers(cfg: Config | SfuConfig) -> int:
    """How many SFU workers to start: sfu.workers, or one per CPU when it is 0."""
    sfu = cfg.sfu if isinstance(cfg, Config) else cfg
    return sfu.workers or os.cpu_count() or 1


def resolved_announced_ips(cfg: Config | SfuConfig) -> list[str]:
    """The addresses to put in ICE candidates: sfu.announced_ips, or [sfu.listen_ip]."""
    sfu = cfg.sfu if isinstance(cfg, Config) else cfg
    # SfuConfig refuses an empty announced_ips when listen_ip is unspecified (0.0.0.0, ::).
    return list(sfu.announced_ips) if sfu.announced_ips else [sfu.listen_ip]


# --- the YAML file ----------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice in one mapping.

    PyYAML silently keeps the last of two equal keys; a setting written twice is as much a
    mistake as a misspelled one.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _values_from_file(path: str, problems: list[str]) -> Values:
    where = f"config file {path}"
    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.load(file, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except OSError as error:
        raise ConfigError(f"{where}: cannot read: {error.strerror or error}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: invalid YAML{at}: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: invalid YAML: {error}") from None
    if document is None:  # an empty file (or only comments)
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {document!r}")
    return _values_from_mapping(document, lambda key_path: f"{where}: {key_path}", problems)


def _values_from_mapping(
    document: dict, locate: Callable[[str], str], problems: list[str]
) -> Values:
    top_rules, sections = Config.rules(), Config.sections()
    values: Values = {}
    for key, raw in document.items():
        if key in top_rules:
            _accept(values, key, top_rules[key], raw, locate(str(key)), problems)
        elif key in sections:
            if raw is None:  # `http:` with nothing under it
                continue
            if not isinstance(raw, dict):
                problems.append(f"{locate(key)}: expected a mapping of {key} settings, got {raw!r}")
                continue
            rules = sections[key].rules()
            section_values = values.setdefault(key, {})
            for name, item in raw.items():
                key_path = locate(f"{key}.{name}")
                if name in rules:
                    _accept(section_values, name, rules[name], item, key_path, problems)
                else:
                    problems.append(f"{key_path}: unknown key (known: {', '.join(rules)})")
        else:
            known = ", ".join([*top_rules, *sections])
            problems.append(f"{locate(str(key))}: unknown key (known: {known})")
    return values


def _accept(
    into: Values, name: str, rule: Rule, raw: Any, where: str, problems: list[str]
) -> None:
    try:
        into[name] = rule.accept(raw)
    except BadValue as error:
        problems.append(f"{where}{error.where}: {error.problem}")


# --- the environment --------------------------------------------------------------------


def _values_from_env(env: Mapping[str, str], problems: list[str]) -> Values:
    values: Values = {}
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or variable == CONFIG_PATH_VAR:
            continue
        found = _setting_of_variable(variable)
        if isinstance(found, str):
            problems.append(found)
            continue
        section_key, name, rule = found
        into = values.setdefault(section_key, {}) if section_key else values
        try:
            into[name] = rule.accept_text(env[variable])
        except BadValue as error:
            problems.append(f"{variable}{error.where}: {error.problem}")
    return values


def _setting_of_variable(variable: str) -> tuple[str, str, Rule] | str:
    """(section key or "", setting name, rule) of a CONCLAVE_ variable, or the problem."""
    top_rules, sections = Config.rules(), Config.sections()
    tail = variable[len(ENV_PREFIX) :].lower()
    if "__" not in tail:
        if tail in top_rules:
            return "", tail, top_rules[tail]
        if tail in sections:
            return (
                f"{variable}: {tail} is a section; set one of its keys as "
                f"{ENV_PREFIX}{tail.upper()}__<KEY>"
            )
        top_variables = ", ".join(ENV_PREFIX + name.upper() for name in top_rules)
        return (
            f"{variable}: unknown setting (known: {top_variables}, and "
            f"{ENV_PREFIX}<SECTION>__<KEY> for sections {', '.join(sections)})"
        )
    section_key, name = tail.split("__", 1)
    if section_key not in sections:
        return f"{variable}: unknown section {section_key!r} (known: {', '.join(sections)})"
    rules = sections[section_key].rules()
    if name not in rules:
        return f"{variable}: unknown key {section_key}.{name} (known: {', '.join(rules)})"
    return section_key, name, rules[name]


# --- assembling -------------------------------------------------------------------------


def _merge(values: Values, later: Values) -> None:
    """Lay `later` over `values`, key by key inside each section."""
    for key, value in later.items():
        if isinstance(value, dict):
            values.setdefault(key, {}).update(value)
        else:
            values[key] = value


def _build(values: Values) -> Config:
    """The Config of checked values; checks across fields of a section happen here."""
    sections = {
        key: cls(**values.get(key, {})) for key, cls in Config.sections().items()
    }
    top = {key: value for key, value in values.items() if key not in sections}
    return Config(**top, **sections)
