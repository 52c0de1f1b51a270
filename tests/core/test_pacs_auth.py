"""A PACS as hospitals run it (secure_pacs.py: Orthanc asking for a registered user, behind
TLS with the hospital's own certificate authority; a bearer-token gateway): find, get and
store with the right credentials over DICOMweb and DIMSE TLS, from the command line; the
wrong password, no credentials, no CA bundle, a certificate for another host name, a
password in the URL, a token that expires once and is fetched again. After each run the
password and the token are nowhere: not on standard output or error, not in the settings
or journal folders."""
from __future__ import annotations

import io
import sys

import pydicom
import pytest

from segview.cli import main
from segview.cli import pacs as pacs_cli
from segview.core.dicom import write_dicom_series
from segview.core.pacs import Credentials, PacsAuthError, PacsCertificateError, PacsError, Query, connect
from segview.core.phantoms import make_phantom

from .secure_pacs import TokenProxy, secret_leaks, secure_pacs_server

PROTOCOLS = ["https", "dimse+tls"]


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    yield from secure_pacs_server(tmp_path_factory, "secure-pacs")


@pytest.fixture(scope="module")
def series(secure, tmp_path_factory):
    """A chest CT in the archive, uploaded through Orthanc's REST API (as its user)."""
    paths = write_dicom_series(make_phantom("lung", 3).volume, tmp_path_factory.mktemp("ct") / "ct",
                               patient_id="TLS-CT-1", patient_name="Secure^Patient", series_description="chest CT")
    secure.orthanc.upload(paths)
    return paths


@pytest.fixture
def password(secure, monkeypatch):
    monkeypatch.setenv("SEGVIEW_PACS_PASSWORD", secure.password)
    return secure.password


def _url(secure, protocol: str) -> str:
    return secure.https_url if protocol == "https" else secure.dimse_tls_url


def _copy_of(path, folder):
    """``path`` as a new image of a new series (stored without touching the archive's series)."""
    copy = pydicom.dcmread(path)
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    copy.SeriesInstanceUID = pydicom.uid.generate_uid()
    copy.save_as(folder / "copy.dcm")
    return folder / "copy.dcm", copy.SOPInstanceUID


def _failure(capfd, *argv) -> str:
    """Run ``segview pacs ARGV`` that must fail; its one-line message."""
    assert main(["pacs", *argv]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.startswith("segview: ") and err.count("\n") == 1, err
    return err


# -- the right credentials ---------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_find_get_and_store_with_a_user_and_the_hospitals_authority(secure, series, password, protocol, tmp_path,
                                                                    capfd):
    url, uid = _url(secure, protocol), pydicom.dcmread(series[0], stop_before_pixels=True).SeriesInstanceUID
    login = ["--user", secure.user, "--ca-bundle", str(secure.ca)]
    assert main(["pacs", "find", url, "--patient-id", "TLS-CT-1", *login]) == 0
    assert uid in capfd.readouterr().out
    assert main(["pacs", "get", url, uid, "-o", str(tmp_path / "ct"), *login]) == 0
    assert sorted(pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "ct").iterdir()) == sorted(
        pydicom.dcmread(p).SOPInstanceUID for p in series)
    copy, sop_uid = _copy_of(series[0], tmp_path)
    assert main(["pacs", "store", url, str(copy), *login]) == 0
    assert secure.orthanc.lookup(sop_uid)
    assert secret_leaks([password], *capfd.readouterr()) == []


def test_the_password_is_asked_on_the_terminal_when_not_in_the_environment(secure, series, monkeypatch, capfd):
    monkeypatch.delenv("SEGVIEW_PACS_PASSWORD", raising=False)
    asked = []
    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr(pacs_cli.getpass, "getpass", lambda prompt: asked.append(prompt) or secure.password)
    assert main(["pacs", "find", secure.https_url, "--user", secure.user, "--ca-bundle", str(secure.ca)]) == 0
    assert asked == [f"Password of {secure.user} at localhost: "]
    assert secret_leaks([secure.password], *capfd.readouterr()) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_or_the_variable_no_password_is_read(secure, monkeypatch, capfd):
    monkeypatch.delenv("SEGVIEW_PACS_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("typed-but-never-read\n"))
    err = _failure(capfd, "find", secure.https_url, "--user", secure.user)
    assert "no password for radiologist: set SEGVIEW_PACS_PASSWORD" in err


# -- refused -----------------------------------------------------------------------------

def test_a_wrong_password_is_one_line_and_nothing_is_written(secure, series, monkeypatch, tmp_path, capfd):
    wrong = "not-" + secure.password
    monkeypatch.setenv("SEGVIEW_PACS_PASSWORD", wrong)
    uid = pydicom.dcmread(series[0], stop_before_pixels=True).SeriesInstanceUID
    login = ["--user", secure.user, "--ca-bundle", str(secure.ca)]
    err = _failure(capfd, "find", secure.https_url, *login)
    assert f"The PACS at {secure.https_url} refused the user name radiologist or its password (HTTP 401)" in err
    err = _failure(capfd, "get", secure.https_url, uid, "-o", str(tmp_path / "ct"), *login)
    assert "(HTTP 401)" in err and not (tmp_path / "ct").exists() and list(tmp_path.iterdir()) == []
    copy, sop_uid = _copy_of(series[0], tmp_path)
    err = _failure(capfd, "store", secure.https_url, str(copy), str(copy), *login)
    assert "(HTTP 401)" in err and "refused 2 of 2" not in err  # stopped at the first: the next would fail alike
    assert not secure.orthanc.lookup(sop_uid)
    assert secret_leaks([wrong, secure.password], err) == []


def test_a_pacs_that_asks_who_you_are_says_how_to_log_in(secure, series, monkeypatch, capfd):
    monkeypatch.delenv("SEGVIEW_PACS_TOKEN", raising=False)
    err = _failure(capfd, "find", secure.https_url, "--ca-bundle", str(secure.ca))
    assert "asks who you are (HTTP 401)" in err and "--user NAME" in err and "--token-command" in err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_without_the_hospitals_authority_the_certificate_is_refused_in_words(secure, series, password, protocol,
                                                                             tmp_path, capfd):
    url, port = _url(secure, protocol), _url(secure, protocol).rsplit(":", 1)[1].split("/")[0]
    uid = pydicom.dcmread(series[0], stop_before_pixels=True).SeriesInstanceUID
    err = _failure(capfd, "get", url, uid, "-o", str(tmp_path / "ct"), "--user", secure.user)
    assert f"The certificate of the PACS at localhost:{port} cannot be trusted: unable to get local issuer " \
           "certificate" in err and "--ca-bundle" in err
    assert list(tmp_path.iterdir()) == []
    assert secret_leaks([password], err) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_certificate_for_another_host_name_is_refused(secure, password, protocol, capfd):
    url = _url(secure, protocol).replace("localhost", "127.0.0.1")  # the certificate names localhost only
    err = _failure(capfd, "find", url, "--user", secure.user, "--ca-bundle", str(secure.ca), "--timeout", "10")
    assert "The certificate of the PACS at 127.0.0.1:" in err and "is not for that host name" in err


def test_a_ca_bundle_that_is_not_pem_is_named(secure, tmp_path, capfd):
    (tmp_path / "ca.pem").write_text("not a certificate")
    err = _failure(capfd, "find", secure.https_url, "--ca-bundle", str(tmp_path / "ca.pem"))
    assert f"The CA bundle {tmp_path / 'ca.pem'} is not a PEM file" in err


@pytest.mark.parametrize("url", ["https://radiologist:{password}@localhost:{port}/dicom-web",
                                 "dimse+tls://ORTHANC:{password}@localhost:{port}"])
def test_a_url_that_carries_a_password_is_refused_and_says_how_to_give_it(secure, url, capfd):
    url = url.format(password=secure.password, port=1234)
    err = _failure(capfd, "find", url)
    assert secret_leaks([secure.password], err) == []
    if url.startswith("https"):
        assert "carries a user name and password" in err and "https://localhost:1234/dicom-web" in err
        assert "--user NAME" in err and "SEGVIEW_PACS_PASSWORD" in err


def test_credentials_never_show_in_their_repr():
    assert "s3cret" not in repr(Credentials("radiologist", "s3cret"))
    assert "s3cret" not in repr(Credentials.fixed_token("s3cret"))
    with pytest.raises(PacsError, match="not both"):
        Credentials("radiologist", "s3cret", token=lambda: "t")


# -- bearer tokens -----------------------------------------------------------------------

@pytest.fixture
def gateway(secure, series):
    proxy = TokenProxy(secure)
    yield proxy
    proxy.stop()


def test_a_token_that_expires_is_fetched_again_by_the_token_command(secure, series, gateway, tmp_path, monkeypatch,
                                                                    capfd):
    first, second = "tok-first-7f3a9c", "tok-second-51be02"
    gateway.allow(first, uses=1)  # expires after the first request
    gateway.allow(second)
    (tmp_path / "tokens").write_text(f"{first}\n{second}\n")
    script = tmp_path / "token.sh"  # prints the next token of the list at each run, counts its runs
    script.write_text('n=$(cat "$0.runs" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0.runs"; '
                      f'sed -n "${{n}}p" {tmp_path / "tokens"}\n')
    monkeypatch.delenv("SEGVIEW_PACS_TOKEN", raising=False)
    login = ["--token-command", f"sh {script}", "--ca-bundle", str(secure.ca)]
    assert main(["pacs", "find", gateway.url, "--patient-id", "TLS-CT-1", *login]) == 0
    out, err = capfd.readouterr()
    assert pydicom.dcmread(series[0], stop_before_pixels=True).SeriesInstanceUID in out
    assert (tmp_path / "token.sh.runs").read_text().strip() == "2"  # once, and once more after the 401
    # Studies, then series: refused, and sent again; then the frames of each series of one file
    # (another test's copy), with the new token.
    assert gateway.presented[:3] == [first, first, second] and set(gateway.presented[3:]) <= {second}
    copy, sop_uid = _copy_of(series[0], tmp_path)
    gateway.allow(second, uses=0)  # expired again: the store is sent again with a third token
    (tmp_path / "tokens").write_text(f"{first}\n{second}\ntok-third-c0ffee\n")
    gateway.allow("tok-third-c0ffee")
    (tmp_path / "token.sh.runs").write_text("1")
    assert main(["pacs", "store", gateway.url, str(copy), *login]) == 0
    assert secure.orthanc.lookup(sop_uid)
    assert secret_leaks([first, second, "tok-third-c0ffee"], out + capfd.readouterr().out, err) == []


def test_a_token_from_the_environment_and_its_expiry(secure, series, gateway, monkeypatch, capfd):
    monkeypatch.setenv("SEGVIEW_PACS_TOKEN", "tok-env-93d1")
    gateway.allow("tok-env-93d1", uses=1)
    assert main(["pacs", "find", gateway.url, "--patient-id", "NOBODY", "--ca-bundle", str(secure.ca)]) == 0
    assert capfd.readouterr().out == "No study matches.\n"
    err = _failure(capfd, "find", gateway.url, "--ca-bundle", str(secure.ca))
    assert "refused the token (HTTP 401)" in err and "get a new one" in err
    assert secret_leaks(["tok-env-93d1"], err) == []


def test_a_token_command_that_fails_is_reported(secure, gateway, monkeypatch, capfd):
    err = _failure(capfd, "find", gateway.url, "--token-command", "exit 3", "--ca-bundle", str(secure.ca))
    assert "The token command failed (exit status 3)" in err


# -- the library, as the window uses it ----------------------------------------------------

def test_the_errors_are_of_their_own_kind(secure, series):
    with pytest.raises(PacsAuthError):
        connect(secure.https_url, credentials=Credentials(secure.user, "wrong"), ca_bundle=secure.ca).find(Query())
    with pytest.raises(PacsCertificateError):
        connect(secure.dimse_tls_url, timeout=10).find(Query())
    [study] = connect(secure.dimse_tls_url, ca_bundle=secure.ca).find(Query(patient_id="TLS-CT-1"))
    assert study.patient_name == "Secure^Patient"


@pytest.mark.parametrize("credentials, expected", [
    (Credentials("radiologist", "pw-dimse-1"), (2, b"radiologist", b"pw-dimse-1")),
    (Credentials("radiologist"), (1, b"radiologist", b"")),
    (Credentials.fixed_token("eyJ.jwt.sig"), (5, b"eyJ.jwt.sig", b""))])
def test_dimse_sends_the_credentials_as_user_identity_negotiation(credentials, expected):
    """A pynetdicom archive that records the user identity each association brings."""
    from pynetdicom import AE, evt

    seen = []

    def identify(event):
        seen.append((event.user_id_type, event.primary_field, event.secondary_field))
        return True, None

    archive = AE(ae_title="ARCHIVE")
    archive.add_supported_context("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root FIND
    server = archive.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_USER_ID, identify), (evt.EVT_C_FIND, lambda event: iter([]))])
    try:
        port = server.server_address[1]
        assert connect(f"dimse://ARCHIVE@127.0.0.1:{port}", credentials=credentials, timeout=10).find(Query()) == []
    finally:
        server.shutdown()
    assert seen == [expected]
