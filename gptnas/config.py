"""Configs are dataclasses, loaded from YAML and overridden by command-line flags.

The one way from settings to a component: every settings dataclass (run
configs, evaluator and retraining settings) is built by `from_dict`, which
converts strings from the command line to the field's type.
`parse_config(Config, argv)` builds the flags from the dataclass fields (same
names as the YAML keys, Hugging Face spelling: `--output_dir`,
`--learning_rate` ...), reads `--config FILE` first, applies flags on top and
validates. An unknown key or a value of the wrong type is a GptnasError that
lists what is valid; a `Literal` field takes only its listed values, and the
parser offers them as choices.

A config may be made of groups: a field whose type is itself a dataclass is a
group, written as a nested mapping in YAML and shown as one section of
`--help`. Field names are unique across the groups, so a flag names its field
without its group, and `flatten` reads a grouped or a flat mapping alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gptnas.errors import GptnasError, quote
from gptnas.files import write_atomic

C = TypeVar("C")


def _field_type(cls, field: dataclasses.Field) -> Any:
    hint = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    return hint


def choices(cls, field: dataclasses.Field) -> tuple | None:
    """The values a `Literal` field takes; None for any other field."""
    kind = _field_type(cls, field)
    return typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None


def groups(cls) -> list[dataclasses.Field]:
    """The fields of `cls` (a dataclass or an instance of one) that are groups (dataclasses) of settings."""
    cls = cls if isinstance(cls, type) else type(cls)
    return [f for f in dataclasses.fields(cls) if dataclasses.is_dataclass(_field_type(cls, f))]


def flatten(data: dict) -> dict:
    """{field: value} of a grouped mapping ({group: {field: value}}) or of a flat one (returned as it is)."""
    flat = {}
    for key, value in data.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    return flat


def _coerce(cls, name: str, value: Any, where: str) -> Any:
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    kind = _field_type(cls, field)
    optional = type(None) in typing.get_args(typing.get_type_hints(cls)[name])
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        return None
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        valid = typing.get_args(kind)
        if value not in valid:
            raise GptnasError(f"{where}: {name} must be one of {', '.join(map(str, valid))}; got {quote(value)}")
        return value
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if origin in (list, tuple):
            (item,) = typing.get_args(kind)[:1] or (str,)
            items = value.split(",") if isinstance(value, str) else list(value)
            return [item(v) for v in items if v != ""]
        if kind in (int, float, str):
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return kind(value)
    except (TypeError, ValueError):
        raise GptnasError(f"{where}: {name} must be {getattr(kind, '__name__', kind)}, got {quote(value)}") from None
    return value


MAX_YAML_BYTES = 1 << 20  # a config file is a few kB; a larger one is refused before it is parsed


class NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (`*name`): a few lines of aliases can expand to gigabytes (the
    "billion laughs"), and no config of ours needs one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a config file",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text: str):
    """The data of a YAML document, read by `NoAliasLoader` (yaml.YAMLError on an alias)."""
    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a safe loader, aliases refused


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """The mapping in the YAML file at `path` (`what` names the file in errors: "config file", "space file")."""
    path = Path(path)
    if not path.is_file():
        raise GptnasError(f"{what} {path} does not exist")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise GptnasError(f"{what} {path} is larger than {MAX_YAML_BYTES} bytes; it should be a few kB")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise GptnasError(f"{what} {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise GptnasError(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise GptnasError(f"{what} {path} cannot be read ({error.strerror})") from None
    if not isinstance(data, dict):
        raise GptnasError(f"{what} {path} must be a mapping of keys to values")
    return data


def from_dict(cls: type[C], data: dict, where: str = "config", *, validate: bool = True) -> C:
    """`cls` from a mapping of its fields, validated (its `validate()`, when it has one, and unless `validate`
    is False: a config that resolves defaults first validates itself after); a group field takes a mapping of
    its own fields and is validated with its config."""
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise GptnasError(f"{where}: unknown config key {quote(unknown[0])}; valid keys: {', '.join(valid)}")
    nested = {f.name: _field_type(cls, f) for f in groups(cls)}
    values = {}
    for key, value in data.items():
        if key in nested:
            if not isinstance(value, dict):
                raise GptnasError(f"{where}: {key} must be a mapping of its settings, got {quote(value)}")
            values[key] = from_dict(nested[key], value, f"{where}, {key}", validate=False)
        else:
            values[key] = _coerce(cls, key, value, where)
    config = cls(**values)
    if validate and hasattr(config, "validate"):
        config.validate()
    return config


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line raised as a GptnasError: one line, like every other."""

    def error(self, message: str):
        raise GptnasError(f"{message} (see --help)")


def build_parser(cls, description: str = "", usage: str | None = None) -> argparse.ArgumentParser:
    """Flags for every field of `cls`; each group of a grouped config is a section of `--help`."""
    parser = ArgumentParser(description=description, usage=usage, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=str, default=None, help="YAML file of settings; flags override it")
    nested = groups(cls)
    for group in nested:
        kind = _field_type(cls, group)
        section = parser.add_argument_group(group.metadata.get("title", group.name), group.metadata.get("help"))
        add_flags(section, kind)
    if not nested:
        add_flags(parser, cls)
    return parser


def add_flags(parser, cls) -> None:
    """One flag per field of `cls` (`--name`, or `--name/--no-name` for a bool), all defaulting to None."""
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        help_text = field.metadata.get("help", "")
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text += f" (default: {default})" if default not in (None, "") else ""
        if kind is bool:
            parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            options = choices(cls, field)
            metavar = {int: "N", float: "X"}.get(kind, "VALUE")
            parser.add_argument(f"--{field.name}", type=str, default=None, help=help_text, choices=options,
                                metavar=None if options else metavar)


def parse_config(cls: type[C], argv: list[str] | None = None, description: str = "") -> C:
    args = vars(build_parser(cls, description).parse_args(argv))
    config_path = args.pop("config")
    data = load_yaml(config_path) if config_path else {}
    where = config_path or "config"
    from_dict(cls, data, where)  # report a bad file as the file's fault, before flags hide it
    data.update({k: v for k, v in args.items() if v is not None})
    return from_dict(cls, data, where if config_path else "command line")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def save_config(config, path: str | Path) -> None:
    write_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False))
