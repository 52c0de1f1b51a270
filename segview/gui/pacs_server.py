"""The PACS a dialog talks to: its address, segview's calling AE title, who segview is
(user and password, or a token) and whom it trusts (a CA bundle), as a form, and what of
it the settings keep.

The settings keep the servers used (``pacs/server``: address, user name, CA bundle path)
and the calling AE title, never a password or a token: those go to ``pacs_secrets`` (the
operating system's keyring, else memory for this run).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from PySide6.QtWidgets import QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QToolButton

from ..core.pacs import DEFAULT_CALLING_AE, Credentials, Pacs, PacsError, connect
from . import pacs_secrets
from .settings import dialog_folder, remember_folder, settings

#: How many PACS the settings remember.
SERVERS_KEPT = 10
KEPT_IN_KEYRING = "Passwords and tokens are kept in this computer's keyring."
KEPT_FOR_THIS_RUN = "No keyring on this computer: passwords and tokens are held until segview closes."


@dataclass(frozen=True)
class Server:
    """A PACS as the settings keep it: no password, no token."""

    url: str
    user: str = ""
    ca_bundle: str = ""


def saved_server_list() -> list[Server]:
    """The PACS used before, the last used first."""
    _forget_old_server_list()
    store = settings()
    servers = []
    for index in range(store.beginReadArray("pacs/server")):
        store.setArrayIndex(index)
        servers.append(Server(*(str(store.value(key, "") or "") for key in ("url", "user", "ca_bundle"))))
    store.endArray()
    return [server for server in servers if server.url]


def saved_servers() -> list[str]:
    """The addresses of the PACS used before, the last used first."""
    return [server.url for server in saved_server_list()]


def remember_server(server: Server, calling_ae: str) -> None:
    servers = [server] + [s for s in saved_server_list() if s.url != server.url]
    store = settings()
    store.beginWriteArray("pacs/server", min(len(servers), SERVERS_KEPT))
    for index, kept in enumerate(servers[:SERVERS_KEPT]):
        store.setArrayIndex(index)
        store.setValue("url", kept.url)
        store.setValue("user", kept.user)
        store.setValue("ca_bundle", kept.ca_bundle)
    store.endArray()
    store.setValue("pacs/calling_ae", calling_ae)


def _forget_old_server_list() -> None:
    """Earlier versions kept the addresses alone (``pacs/servers``), a password in one if it
    was typed there: they move to ``pacs/server`` without it, and the old list is removed."""
    store = settings()
    old = store.value("pacs/servers", None)
    if old is None:
        return
    store.remove("pacs/servers")
    urls = [str(url) for url in (old if isinstance(old, list) else [old]) if url]
    for url in reversed(urls):
        parts = urlsplit(url)
        if parts.scheme.lower().startswith("http") and (parts.username or parts.password):
            bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            server = Server(bare, parts.username or "")
        else:
            server = Server(url)
        remember_server(server, str(store.value("pacs/calling_ae", DEFAULT_CALLING_AE)))


class ServerForm(QGridLayout):
    """The PACS address (an editable list of the saved ones), the calling AE title, the
    user and password or token, and the CA bundle; a line says where secrets are kept."""

    def __init__(self):
        super().__init__()
        self._saved = {server.url: server for server in saved_server_list()}
        self.url = QComboBox()
        self.url.setEditable(True)
        self.url.addItems(list(self._saved))
        self.url.lineEdit().setPlaceholderText("https://host:port/dicom-web  or  dimse[+tls]://AET@host:port")
        self.url.setMinimumWidth(380)
        self.calling_ae = QLineEdit(str(settings().value("pacs/calling_ae", DEFAULT_CALLING_AE)))
        self.calling_ae.setMaxLength(16)
        self.calling_ae.setToolTip("segview's AE title for DIMSE (the PACS must know it)")
        self.user, self.password, self.token, self.ca_bundle = QLineEdit(), QLineEdit(), QLineEdit(), QLineEdit()
        for secret in (self.password, self.token):
            secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.user.setPlaceholderText("none")
        self.token.setToolTip("a bearer token (OAuth2): instead of a user and password")
        self.ca_bundle.setPlaceholderText("the system's authorities")
        self.ca_bundle.setToolTip("a PEM file of the certificate authorities to trust for TLS (a hospital's own)")
        self.keeping = QLabel()
        self.keeping.setStyleSheet("color: gray")
        self._lay_out()
        self.url.currentIndexChanged.connect(self._fill_saved)  # a saved PACS chosen (typing changes no index)
        self.url.lineEdit().editingFinished.connect(self._show_kept)  # another address typed
        self.user.editingFinished.connect(self._show_kept)
        self._fill_saved()

    def _lay_out(self) -> None:
        browse = QToolButton()
        browse.setText("...")
        browse.setToolTip("Choose the CA bundle")
        browse.clicked.connect(self._choose_ca_bundle)
        ca_bundle = QHBoxLayout()
        ca_bundle.addWidget(self.ca_bundle, 1)
        ca_bundle.addWidget(browse)
        rows = [("PACS", self.url, "Calling AE", self.calling_ae), ("User", self.user, "Password", self.password),
                ("Token", self.token, "CA bundle", ca_bundle)]
        for row, (first, first_field, second, second_field) in enumerate(rows):
            self.addWidget(QLabel(first), row, 0)
            self.addWidget(first_field, row, 1)
            self.addWidget(QLabel(second), row, 2)
            (self.addLayout if isinstance(second_field, QHBoxLayout) else self.addWidget)(second_field, row, 3)
        self.addWidget(self.keeping, len(rows), 1, 1, 3)
        self.setColumnStretch(1, 2)
        self.setColumnStretch(3, 1)

    def _choose_ca_bundle(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parentWidget(), "CA bundle", str(dialog_folder()),
                                              "PEM certificates (*.pem *.crt *.cer);;All files (*)")
        if path:
            remember_folder(path)
            self.ca_bundle.setText(path)

    def _fill_saved(self) -> None:
        """A saved PACS chosen: its user name and CA bundle back in their fields."""
        server = self._saved.get(self.address())
        if server is not None:
            self.user.setText(server.user)
            self.ca_bundle.setText(server.ca_bundle)
        self._show_kept()

    def _show_kept(self) -> None:
        """Say whether a password or token is kept for this PACS, and where secrets go."""
        kept = bool(self.address()) and bool(pacs_secrets.load(self.address(), self._secret_name()))
        user = bool(self.user.text().strip())
        self.password.setPlaceholderText("kept" if kept and user else "")
        self.token.setPlaceholderText("kept" if kept and not user else "")
        self.keeping.setText(KEPT_IN_KEYRING if pacs_secrets.keyring_usable() else KEPT_FOR_THIS_RUN)

    def _secret_name(self) -> str:
        """What the secret of the form is filed as: the user's password, else the token."""
        user = self.user.text().strip()
        return pacs_secrets.password_of(user) if user else pacs_secrets.TOKEN

    # -- what the form says ----------------------------------------------------------

    def address(self) -> str:
        return self.url.currentText().strip()

    def credentials(self) -> Credentials:
        """Who segview is: the user and the password typed or kept, else the token typed or
        kept. Raises PacsError when both a user and a token are typed."""
        url, user, token = self.address(), self.user.text().strip(), self.token.text().strip()
        if user and token:
            raise PacsError("Give either a user and password or a token, not both.")
        if user:
            return Credentials(user, self.password.text() or pacs_secrets.load(url, pacs_secrets.password_of(user)))
        token = token or pacs_secrets.load(url, pacs_secrets.TOKEN)
        return Credentials.fixed_token(token) if token else Credentials()

    def open_pacs(self) -> Pacs:
        """The archive chosen; raises PacsError for a malformed address or AE title, an
        address with a password in it, or a CA bundle that cannot be read."""
        url = self.address()
        if not url:
            raise PacsError("Enter the address of the PACS.")
        return connect(url, self.calling_ae.text().strip() or DEFAULT_CALLING_AE, credentials=self.credentials(),
                       ca_bundle=self.ca_bundle.text().strip() or None)

    def remember(self) -> None:
        """The PACS answered: keep it in the settings (no secret), its secrets typed in the
        keyring (else for this run)."""
        url, user = self.address(), self.user.text().strip()
        remember_server(Server(url, user, self.ca_bundle.text().strip()),
                        self.calling_ae.text().strip() or DEFAULT_CALLING_AE)
        typed = self.password.text() if user else self.token.text().strip()
        if typed:
            pacs_secrets.keep(url, self._secret_name(), typed)

    def forget_secrets(self) -> None:
        """The PACS refused them: asked again next time."""
        pacs_secrets.forget(self.address(), self._secret_name())
