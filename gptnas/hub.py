"""Folders from the Hugging Face Hub (models, adapters, exported networks), with one-line errors.

A Hub id comes through the Hugging Face cache, so what was downloaded once loads
offline; only the file patterns asked for are fetched (never pickled weights).
"""

from __future__ import annotations

from pathlib import Path

from gptnas.errors import GptnasError, one_line


def local_folder(name_or_path: str | Path, revision: str | None, patterns: list[str], what: str, missing: str) -> Path:
    """The folder at `name_or_path`, or the cached snapshot of the Hub id `name_or_path` (`what` names the
    thing in errors; `missing` is the error when it is neither)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise GptnasError(missing)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise GptnasError(f"{what} {name!r} is not in the local Hugging Face cache and the Hub cannot be reached "
                          "(offline?); download it once online, or give a local folder") from None
    except HFValidationError:
        raise GptnasError(missing) from None
    except RepositoryNotFoundError:
        raise GptnasError(f"no Hub repository {name!r} (or it is private: log in with `hf auth login`)") from None
    except (HfHubHTTPError, OSError) as error:
        raise GptnasError(f"could not fetch {name!r} from the Hub: {one_line(error)}") from None
