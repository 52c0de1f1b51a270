"""The passwords and tokens of the PACS the window is given, and nothing else: kept in the
operating system's keyring (the ``keyring`` package: Secret Service, macOS Keychain,
Windows Credential Locker) when it has a usable one, else held in memory until segview
closes and asked again the next time. Never in the settings, a log or a message.

A secret is filed under the PACS address and what it is: ``password_of(user)`` or
``TOKEN``.
"""
from __future__ import annotations

#: The keyring's service name for every secret segview keeps.
SERVICE = "segview PACS"
TOKEN = "token"

_held: dict[str, str] = {}  # where no keyring is usable: for this run only


def password_of(user: str) -> str:
    return f"password of {user}"


def keyring_usable() -> bool:
    """Whether the secrets outlive this run (a keyring backend that stores them)."""
    return _keyring() is not None


def load(url: str, what: str) -> str:
    """The secret ``what`` kept for ``url``; "" when none is."""
    key = _key(url, what)
    ring = _keyring()
    if ring is not None:
        try:
            found = ring.get_password(SERVICE, key)
        except Exception:  # noqa: BLE001 - each backend raises its own kinds: a locked or broken keyring
            found = None
        if found:
            return found
    return _held.get(key, "")


def keep(url: str, what: str, secret: str) -> None:
    """Keep ``secret`` as ``what`` for ``url``: in the keyring, else in memory for this run."""
    key = _key(url, what)
    ring = _keyring()
    if ring is not None:
        try:
            ring.set_password(SERVICE, key, secret)
            _held.pop(key, None)
            return
        except Exception:  # noqa: BLE001 - a keyring that refuses: held for this run instead
            pass
    _held[key] = secret


def forget(url: str, what: str) -> None:
    """Drop the secret ``what`` of ``url`` (refused by the PACS: asked again next time)."""
    key = _key(url, what)
    _held.pop(key, None)
    ring = _keyring()
    if ring is not None:
        try:
            ring.delete_password(SERVICE, key)
        except Exception:  # noqa: BLE001 - nothing kept there, or a locked keyring
            pass


def forget_held() -> None:
    """Drop every secret held in memory (those in the keyring stay)."""
    _held.clear()


def _key(url: str, what: str) -> str:
    return f"{what} at {url}"


def _keyring():
    """The keyring backend when it stores secrets (priority above 0: not keyring's ``fail``
    or ``null`` backend), else None."""
    try:
        import keyring

        backend = keyring.get_keyring()
        return backend if backend.priority > 0 else None
    except Exception:  # noqa: BLE001 - keyring missing or misconfigured: no keyring
        return None
