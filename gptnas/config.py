"""Configs are dataclasses, loaded from YAML and overridden by command-line flags.

The one way from settings to a component: every settings dataclass (run
configs, evaluator and retraining settings) is built by `from_dict`, which
converts strings from the command line to the field's type.
`parse_config(Config, argv)` builds the flags from the dataclass fields (same
names as the YAML keys, Hugging Face spelling: `--output_dir`,
`--learning_rate` ...), reads `--config FILE` first, applies flags on top and
validates. An unknown key or a value of the wrong type is a GptnasError that
lists what is valid.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gptnas.errors import GptnasError
from gptnas.files import write_atomic

C = TypeVar("C")


def _field_type(cls, field: dataclasses.Field) -> Any:
    hint = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    return hint


def _coerce(cls, name: str, value: Any, where: str) -> Any:
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    kind = _field_type(cls, field)
    optional = type(None) in typing.get_args(typing.get_type_hints(cls)[name])
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        return None
    origin = typing.get_origin(kind)
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
        raise GptnasError(f"{where}: {name} must be {getattr(kind, '__name__', kind)}, got {value!r}") from None
    return value


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise GptnasError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise GptnasError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise GptnasError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise GptnasError(f"config file {path} cannot be read ({error.strerror})") from None
    if not isinstance(data, dict):
        raise GptnasError(f"config file {path} must be a mapping of keys to values")
    return data


def from_dict(cls: type[C], data: dict, where: str = "config") -> C:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise GptnasError(f"{where}: unknown config key {unknown[0]!r}; valid keys: {', '.join(valid)}")
    values = {k: _coerce(cls, k, v, where) for k, v in data.items()}
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def build_parser(cls, description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=str, default=None, help="YAML file of settings; flags override it")
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        help_text = field.metadata.get("help", "")
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text += f" (default: {default})" if default not in (None, "") else ""
        if kind is bool:
            parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(f"--{field.name}", type=str, default=None, help=help_text, metavar=field.name.upper())
    return parser


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
