"""API keys and tokens: read from the environment or a private config file, never shown.

:func:`require_secret` looks up a variable (``FLICKR_API_KEY``, ``X_BEARER_TOKEN``, ...) in the
environment, then in ``~/.config/dlprep/secrets.toml`` (``DLPREP_SECRETS`` names another file), a
TOML table of ``NAME = "value"`` lines that must be private to its owner (mode 0600: a file that
the group or others can read is refused). A missing secret is one line naming the variable,
raised before any request is made.

Every secret handed out is registered with :mod:`dlprep.redact`, so that ``redact_url``,
``redact_text``, the CLI's error line and the ``dlprep`` log lines mask it wherever it appears.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from .errors import DlprepError
from .redact import mask_secrets, register_secret

__all__ = ["config_path", "optional_secret", "require_secret", "secret_variable"]

_VARIABLES: dict[str, str] = {}  # secret value -> the variable it came from (for messages)
_LOCK = threading.Lock()
_FILTER_INSTALLED = False


def config_path() -> Path:
    """``$DLPREP_SECRETS``, else ``$XDG_CONFIG_HOME/dlprep/secrets.toml`` (``~/.config``)."""
    override = os.environ.get("DLPREP_SECRETS", "").strip()
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
    return Path(base) / "dlprep" / "secrets.toml"


def _from_file(var: str) -> str | None:
    import tomllib

    path = config_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DlprepError(f"{path}: cannot read the secrets file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DlprepError(f"{path}: the secrets file is not a regular file")
    if st.st_mode & 0o077:
        raise DlprepError(f"{path}: the secrets file is readable by others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); refusing it: chmod 600 {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # the parser's message may quote a line of the file: never show it
        raise DlprepError(f"{path}: not a valid TOML secrets file ({type(exc).__name__}); "
                          f"expected lines like {var} = \"...\"") from None
    value = data.get(var)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DlprepError(f"{path}: {var} must be a string")
    return value


def require_secret(var: str, *, source: str) -> str:
    """The value of secret ``var`` for ``source`` (e.g. ``"Flickr"``): from the environment,
    else the secrets file. Raises ``DlprepError`` (one line naming ``var``) when it is missing
    or empty. The value is registered for redaction before it is returned."""
    value = os.environ.get(var)
    where = "environment"
    if value is None or not value.strip():
        value = _from_file(var)
        where = str(config_path())
    if value is None or not value.strip():
        raise DlprepError(f"{source} needs an API key: set {var} in the environment or in "
                          f"{config_path()} (mode 600)")
    value = value.strip()
    register(value, var)
    logging.getLogger("dlprep").debug("%s: using %s from the %s", source, var,
                                      "environment" if where == "environment" else where)
    return value


def optional_secret(var: str, *, source: str) -> str | None:
    """Like :func:`require_secret` for a key that only some requests need (e.g. restricted
    Internet Archive items): None when ``var`` is in neither the environment nor the secrets
    file; a secrets file that is unsafe or unreadable is still an error."""
    value = os.environ.get(var)
    if value is None or not value.strip():
        value = _from_file(var)
    if value is None or not value.strip():
        return None
    return require_secret(var, source=source)


def register(value: str, var: str = "") -> None:
    """Mask ``value`` everywhere from now on (``var``: the variable it came from, if any)."""
    register_secret(value)
    with _LOCK:
        if var:
            _VARIABLES[value] = var
    _install_log_filter()


def secret_variable(value: str) -> str | None:
    """The variable a secret came from (``require_secret``), or None."""
    with _LOCK:
        return _VARIABLES.get(value)


class _MaskFilter(logging.Filter):
    """Masks registered secrets in a log record (message and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def _install_log_filter() -> None:
    """Put the mask on the ``dlprep`` logger and on urllib3's request logger (which logs
    request lines, query strings included, at DEBUG level)."""
    global _FILTER_INSTALLED
    with _LOCK:
        if _FILTER_INSTALLED:
            return
        _FILTER_INSTALLED = True
    mask = _MaskFilter()
    for name in ("dlprep", "urllib3.connectionpool", "urllib3"):
        logging.getLogger(name).addFilter(mask)
