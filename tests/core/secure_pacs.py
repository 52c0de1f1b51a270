"""A PACS as hospitals deploy it, for the tests: Orthanc asking for a registered user, behind
TLS (stunnel4 in front of its HTTP and DICOM ports: the ``SslEnabled`` of Debian's Orthanc
1.10 resets every connection after the handshake), with a certificate authority and a
server certificate for ``localhost`` made here with ``openssl``; and a bearer-token gateway
(``TokenProxy``) as cloud archives have. Everything on 127.0.0.1, free ports, stopped by
whoever started it."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import ORTHANC_AET, Orthanc, basic_authorization, free_port, orthanc_missing

STUNNEL_PLACES = ("/usr/bin/stunnel4", "/usr/bin/stunnel", "/usr/sbin/stunnel4", "/usr/sbin/stunnel")


def secure_pacs_missing() -> str | None:
    """Why no TLS Orthanc can be started here, or None."""
    if orthanc_missing():
        return orthanc_missing()
    if not _stunnel():
        return "stunnel is not installed (apt-get install stunnel4; scripts/setup.sh does it)"
    if not shutil.which("openssl"):
        return "openssl is not installed (apt-get install openssl)"
    return None


def _stunnel() -> str | None:
    return shutil.which("stunnel4") or shutil.which("stunnel") or next(
        (p for p in STUNNEL_PLACES if Path(p).is_file()), None)


@dataclass(frozen=True)
class Certificates:
    ca: Path    # the hospital's authority (PEM): what --ca-bundle is given
    cert: Path  # the server's certificate, for DNS:localhost only (not for 127.0.0.1)
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A certificate authority and a server certificate it signed for ``localhost``."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    for command in (
            ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=segview test hospital CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext"]):
        subprocess.run(["openssl", *command], cwd=folder, check=True, capture_output=True)
    return Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")


def _wait_for_ports(ports, process: subprocess.Popen, log: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    for port in ports:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} stopped: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{process.args[0]} did not listen on {port} within {seconds} s")
                time.sleep(0.05)


class Stunnel:
    """stunnel4 terminating TLS in front of loopback ports: ``ports[name]`` is the TLS port
    in front of ``targets[name]``."""

    def __init__(self, folder: Path, targets: dict[str, int], certificates: Certificates):
        folder.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in targets}
        services = "".join(
            f"[{name}]\naccept = 127.0.0.1:{self.ports[name]}\nconnect = 127.0.0.1:{port}\n"
            f"cert = {certificates.cert}\nkey = {certificates.key}\n" for name, port in targets.items())
        (folder / "stunnel.conf").write_text(f"foreground = yes\npid =\n{services}")
        self.log = open(folder / "stunnel.log", "wb")  # noqa: SIM115 - open while the process runs
        self.process = subprocess.Popen([_stunnel(), str(folder / "stunnel.conf")], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        try:
            _wait_for_ports(self.ports.values(), self.process, folder / "stunnel.log")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class SecurePacs:
    """Orthanc with one registered user (``user``, ``password``: random, so a leak of its
    bytes anywhere is found), reached over TLS only through stunnel: ``https_url`` and
    ``dimse_tls_url`` (host ``localhost``, the name in the certificate); ``ca`` is the
    authority to give segview."""

    user = "radiologist"

    def __init__(self, folder: Path):
        self.password = "pw-" + secrets.token_urlsafe(18)
        self.certificates = make_certificates(folder / "tls")
        self.orthanc = Orthanc(folder / "orthanc", users={self.user: self.password})
        try:
            self.tunnel = Stunnel(folder / "stunnel", {"https": self.orthanc.http_port,
                                                       "dicom": self.orthanc.dicom_port}, self.certificates)
        except RuntimeError:
            self.orthanc.stop()
            raise

    @property
    def ca(self) -> Path:
        return self.certificates.ca

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.tunnel.ports['https']}/dicom-web"

    @property
    def dimse_tls_url(self) -> str:
        return f"dimse+tls://{ORTHANC_AET}@localhost:{self.tunnel.ports['dicom']}"

    def stop(self) -> None:
        self.tunnel.stop()
        self.orthanc.stop()


def secure_pacs_server(tmp_path_factory, name: str):
    """A running SecurePacs in a new folder ``name`` (skipped where Orthanc or stunnel is not
    installed), stopped when the generator is closed: ``yield from`` it in a fixture."""
    reason = secure_pacs_missing()
    if reason:
        pytest.skip(reason)
    server = SecurePacs(tmp_path_factory.mktemp(name))
    yield server
    server.stop()


class TokenProxy:
    """An HTTPS DICOMweb gateway that checks bearer tokens (Orthanc's own authentication
    knows only user names and passwords): a request with ``Authorization: Bearer T`` for a
    token ``allow``-ed is forwarded to the PACS's Orthanc as its registered user, anything
    else is answered 401. A token allowed for ``uses`` requests expires after them.
    ``presented`` lists the tokens requests came with, in order."""

    def __init__(self, pacs: SecurePacs):
        self._valid: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self.presented: list[str | None] = []
        target = f"http://127.0.0.1:{pacs.orthanc.http_port}"
        login = basic_authorization(pacs.user, pacs.password)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _forwarding_handler(self, target, login))
        self.server.handle_error = lambda request, address: None  # a refused handshake is the test's point
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pacs.certificates.cert, pacs.certificates.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.server_address[1]}/dicom-web"

    def allow(self, token: str, uses: int | None = None) -> None:
        with self._lock:
            self._valid[token] = uses

    def admits(self, token: str | None) -> bool:
        """Whether a request with ``token`` goes through (and counts one use of it)."""
        with self._lock:
            self.presented.append(token)
            left = self._valid.get(token, 0) if token else 0
            if left is None:
                return True
            if left > 0:
                self._valid[token] = left - 1  # type: ignore[index]
                return True
            return False

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def _forwarding_handler(proxy: TokenProxy, target: str, login: str):
    class Forward(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - quiet: the tests read stderr
            pass

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None  # read first: a 401 must not cut an upload
            given = self.headers.get("Authorization", "")
            token = given[len("Bearer "):] if given.startswith("Bearer ") else None
            if not proxy.admits(token):
                self._answer(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, b"")
                return
            request = urllib.request.Request(target + self.path, data=body, method=self.command)
            for name in ("Accept", "Content-Type"):
                if self.headers.get(name):
                    request.add_header(name, self.headers[name])
            request.add_header("Authorization", login)
            try:
                answer = urllib.request.urlopen(request, timeout=60)
            except urllib.error.HTTPError as refused:
                answer = refused
            with answer:
                self._answer(answer.status, {"Content-Type": answer.headers.get("Content-Type", "")}, answer.read())

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if value:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = forward

    return Forward


def secret_leaks(secret_values, out: str = "", err: str = "") -> list[str]:
    """Where the bytes of any of ``secret_values`` are found: standard output and error (as
    given), and every file of the window's settings folder and of the journal folder (the
    private ones of this test: see tests/conftest.py). Names the places, never the secret."""
    from PySide6.QtCore import QSettings

    settings_file = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "segview", "segview").fileName()
    places = {"standard output": out.encode(), "standard error": err.encode()}
    for folder in (Path(settings_file).parent, Path(os.environ["XDG_STATE_HOME"])):
        places.update({str(path): path.read_bytes() for path in folder.rglob("*") if path.is_file()})
    return sorted({where for where, data in places.items() for secret in secret_values
                   if secret and secret.encode() in data})
