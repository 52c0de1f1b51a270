"""Who segview is to a PACS and whom it trusts.

- ``Credentials``: a user name and password (HTTP basic authentication; DICOM user
  identity negotiation over DIMSE), or a bearer token from a ``TokenSource`` that is asked
  again when the archive answers 401 (an OAuth2 token that expired).
- TLS: the system's certificate authorities, or only those of a hospital's own PEM bundle
  (``tls_context``, ``https_verify``); a certificate that cannot be trusted becomes a
  ``PacsCertificateError`` that says which host and what failed (``certificate_failure``).

Secrets never appear in a message, a ``repr``, a log or an address: ``Credentials`` keeps
them out of its ``repr`` and an address that carries one is refused (``refuse_userinfo``).
"""
from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from .errors import PacsError

#: Gives a bearer token; called again when the archive refuses the last one.
TokenSource = Callable[[], str]

__all__ = ["BearerAuth", "Credentials", "PacsAuthError", "PacsCertificateError", "TokenSource", "certificate_failure",
           "https_verify", "refuse_userinfo", "tls_context"]

HOW_TO_GIVE = ("give the user name and password separately (command line: --user NAME, the password from "
               "SEGVIEW_PACS_PASSWORD or the prompt; window: the User and Password fields)")
HOW_TO_LOG_IN = ("give a user name and password, or a token (command line: --user NAME, or SEGVIEW_PACS_TOKEN or "
                 "--token-command CMD; window: the User and Password fields, or the Token field)")


class PacsAuthError(PacsError):
    """The archive asked who segview is, or refused who it said it is (HTTP 401/403)."""


class PacsCertificateError(PacsError):
    """The TLS connection failed: the archive's certificate cannot be trusted, is not for
    its host name, or the handshake failed."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or a bearer token (never both); neither shows in ``repr``."""

    user: str = ""
    password: str = field(default="", repr=False)
    token: TokenSource | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.user and self.token is not None:
            raise PacsError("Give either a user name and password or a token, not both.")

    @property
    def given(self) -> bool:
        return bool(self.user) or self.token is not None

    @staticmethod
    def fixed_token(token: str) -> Credentials:
        """Credentials with a token that is not renewed (pasted, or from the environment)."""
        return Credentials(token=lambda: token)


def refuse_userinfo(url: str) -> None:
    """Raise PacsError when the address of a DICOMweb archive carries a user name or a
    password: they would show in shell history, process lists and the window's settings.
    The message shows the address without them and says how to give them."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return
    what = "a user name and password" if parts.password is not None else "a user name"
    host = parts.netloc.rpartition("@")[2]
    bare = parts._replace(netloc=host).geturl()
    raise PacsError(f"The PACS address carries {what}; segview never takes credentials in an address. "
                    f"Use {bare} and {HOW_TO_GIVE}.")


def tls_context(ca_bundle=None) -> ssl.SSLContext:
    """A client TLS context that checks the archive's certificate and host name against
    the system's authorities, or only those in ``ca_bundle`` (a PEM file). Raises
    PacsError when the bundle cannot be read."""
    try:
        return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    except FileNotFoundError as exc:
        raise PacsError(f"The CA bundle {ca_bundle} does not exist.") from exc
    except ssl.SSLError as exc:
        raise PacsError(f"The CA bundle {ca_bundle} is not a PEM file of certificate authorities "
                        f"({exc.reason or exc}).") from exc
    except OSError as exc:
        raise PacsError(f"Cannot read the CA bundle {ca_bundle}: {exc.strerror or exc}.") from exc


def https_verify(ca_bundle=None) -> str | bool:
    """What ``requests`` checks certificates against: ``ca_bundle``, else the system's
    bundle (``requests`` alone would use certifi's, not the authorities the hospital
    installed), else ``True`` (certifi) where the system has no bundle file."""
    if ca_bundle:
        return str(ca_bundle)
    system = ssl.get_default_verify_paths().cafile
    return system if system and os.path.isfile(system) else True


def certificate_failure(exc: BaseException, where: str, ca_bundle=None) -> PacsCertificateError | None:
    """The TLS failure inside ``exc`` (wrapped by requests or urllib3 or not) in words, naming
    ``where`` (host:port); None when ``exc`` holds no TLS failure."""
    verification = _find(exc, ssl.SSLCertVerificationError)
    if verification is not None:
        reason = (verification.verify_message or verification.reason or "verification failed").rstrip(".")
        if verification.verify_code in (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH):
            return PacsCertificateError(
                f"The certificate of the PACS at {where} is not for that host name ({reason}): connect with the "
                "name the certificate was made for (ask the PACS administrators which).")
        trusted = f"the authorities in {ca_bundle}" if ca_bundle else "this computer's certificate authorities"
        return PacsCertificateError(
            f"The certificate of the PACS at {where} cannot be trusted: {reason} (checked against {trusted}). "
            "If the hospital signs its own certificates, give its authority's PEM file (command line: "
            "--ca-bundle FILE; window: the CA bundle field).")
    failure = _find(exc, ssl.SSLError)
    if failure is not None:
        return PacsCertificateError(f"The TLS connection to the PACS at {where} failed "
                                    f"({failure.reason or failure}): is this the archive's TLS port?")
    return None


_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH = 62, 64  # OpenSSL's X509_V_ERR_* codes
_E = TypeVar("_E", bound=BaseException)


def _find(exc: BaseException | None, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` among ``exc``, its causes and what it wraps
    (requests and urllib3 keep the original in ``args`` or ``reason``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return None


class BearerAuth:
    """``Authorization: Bearer`` for a ``requests`` session, from a TokenSource asked once
    and again when the archive answers 401; the request is then sent once more with the new
    token (as ``requests``' own digest authentication answers its 401)."""

    def __init__(self, source: TokenSource):
        self._source = source
        self._token: str | None = None
        self._lock = threading.Lock()  # the window's searches and retrieves share one session

    def __call__(self, request):
        with self._lock:
            if self._token is None:
                self._token = self._fetch()
            request.headers["Authorization"] = f"Bearer {self._token}"
        _make_resendable(request)
        request.register_hook("response", self._renew_on_401)
        return request

    def _fetch(self) -> str:
        token = self._source().strip()
        if not token:
            raise PacsAuthError("The token source gave an empty token.")
        return token

    def _renew_on_401(self, response, **kwargs):
        if response.status_code != 401:
            return response
        sent = response.request.headers.get("Authorization")
        with self._lock:
            if sent == f"Bearer {self._token}":  # not renewed yet by another request
                self._token = self._fetch()
            if sent == f"Bearer {self._token}":  # the source gives the same token: no use asking again
                return response
            retry = response.request.copy()
            retry.headers["Authorization"] = f"Bearer {self._token}"
        response.content  # noqa: B018 - read to the end so that its connection is released
        response.close()
        answer = response.connection.send(retry, **kwargs)
        answer.history.append(response)
        answer.request = retry
        return answer


def _make_resendable(request) -> None:
    """A body streamed from a generator could not be sent again after a 401: join it (it was
    all in memory already: dicomweb-client only cuts its bytes into chunks)."""
    body = request.body
    if body is None or isinstance(body, (bytes, str)):
        return
    request.body = b"".join(body)
    request.headers.pop("Transfer-Encoding", None)
    request.headers["Content-Length"] = str(len(request.body))
