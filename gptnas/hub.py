"""Hugging Face Hub I/O for everything gptnas publishes or loads (GPTs, adapters, exported networks), with
one-line errors.

A Hub id comes through the Hugging Face cache, so what was downloaded once loads
offline; only the file patterns asked for are fetched (never pickled weights), and
only the patterns asked for are uploaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import huggingface_hub
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

from gptnas.errors import GptnasError, one_line, quote

log = logging.getLogger(__name__)


def hub_id(name_or_path: str | Path | None) -> str | None:
    """`name_or_path` if it names a Hub repository ('org/name') rather than a local folder; else None."""
    if name_or_path is None:
        return None
    name = str(name_or_path)
    if Path(name).expanduser().exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        return None
    return name


def local_folder(name_or_path: str | Path, revision: str | None, patterns: list[str], what: str, missing: str) -> Path:
    """The folder at `name_or_path`, or the cached snapshot of the Hub id `name_or_path` (`what` names the
    thing in errors; `missing` is the error when it is neither)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = hub_id(name_or_path)
    if name is None:
        raise GptnasError(missing)
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise GptnasError(f"{what} {quote(name)} is not in the local Hugging Face cache and the Hub cannot be reached "
                          "(offline?); download it once online, or give a local folder") from None
    except HFValidationError:
        raise GptnasError(missing) from None
    except RepositoryNotFoundError:
        raise GptnasError(f"no Hub repository {quote(name)} (or it is private: log in with `hf auth login`)") from None
    except (HfHubHTTPError, OSError) as error:
        raise GptnasError(f"could not fetch {quote(name)} from the Hub: {one_line(error)}") from None


def push_folder(folder: str | Path, repo_id: str, patterns: list[str], message: str, *, token: str | None = None,
                api=None, private: bool | None = None) -> str:
    """Uploads the files of `folder` that match `patterns` to the Hub repository `repo_id` (created when
    missing; `private`: None keeps the account's default visibility); returns the commit URL.

    `api` is a `huggingface_hub.HfApi`-like object; tests pass a fake one."""
    api = api if api is not None else huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True, private=private)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, allow_patterns=list(patterns),
                                 commit_message=message)
    except OSError as error:  # requests / httpx errors derive from OSError
        raise GptnasError(f"could not push to the Hub repository {quote(repo_id)}: {one_line(error)}") from None
    log.info("pushed %s to %s", folder, repo_id)
    return str(getattr(info, "commit_url", repo_id))
