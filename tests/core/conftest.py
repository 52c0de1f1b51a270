"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin, on loopback with
free ports, a temporary configuration and storage, stopped after the tests that use it."""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ORTHANC_AET = "ORTHANC"
_PLUGIN_PLACES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so")


def orthanc_missing() -> str | None:
    """Why no Orthanc can be started here, or None."""
    if not _orthanc_binary():
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; scripts/setup.sh does it)"
    if not _dicomweb_plugin():
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def _orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
                                            if Path(p).is_file()), None)


def _dicomweb_plugin() -> str | None:
    return next((p for p in _PLUGIN_PLACES if Path(p).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process: ``dicomweb_url``, ``dimse_url``; ``upload`` and ``lookup``
    go through Orthanc's own REST API, independent of segview's PACS code. With ``users``
    (name: password) its HTTP side asks for one of them (``AuthenticationEnabled``)."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None):
        self.folder, self.users = folder, dict(users or {})
        folder.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        config = {
            "Name": "segview-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": ORTHANC_AET,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": bool(self.users), "RegisteredUsers": self.users,
            # A real PACS checks whom it is called as: a wrong called AE title is refused.
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowStore": True,
            "Plugins": [_dicomweb_plugin()], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - open while the process runs
        self.process = subprocess.Popen([_orthanc_binary(), str(folder / "orthanc.json")],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_until_up()

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse_url(self) -> str:
        return f"dimse://{ORTHANC_AET}@127.0.0.1:{self.dicom_port}"

    def _wait_until_up(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc stopped: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.rest("/system")
                with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not start within 30 s")

    def rest(self, path: str, data: bytes | None = None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data,
                                         method="POST" if data is not None else "GET")
        if self.users:
            request.add_header("Authorization", basic_authorization(*next(iter(self.users.items()))))
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def upload(self, paths) -> None:
        for path in paths:
            self.rest("/instances", Path(path).read_bytes())

    def lookup(self, uid: str) -> list[dict]:
        """Orthanc's own answer to "which resources have this UID"."""
        return self.rest("/tools/lookup", uid.encode())

    def instance_file(self, sop_instance_uid: str) -> bytes:
        [found] = [r for r in self.lookup(sop_instance_uid) if r["Type"] == "Instance"]
        return self.rest(f"/instances/{found['ID']}/file")

    def instance_metadata(self, sop_instance_uid: str, name: str) -> str:
        [found] = [r for r in self.lookup(sop_instance_uid) if r["Type"] == "Instance"]
        return self.rest(f"/instances/{found['ID']}/metadata/{name}").decode()

    def instances(self, study_uid: str, modality: str = "") -> list[dict]:
        """The main tags of each instance Orthanc holds in the study (of one modality)."""
        query = {"StudyInstanceUID": study_uid, **({"Modality": modality} if modality else {})}
        found = self.rest("/tools/find", json.dumps({"Level": "Instance", "Query": query, "Expand": True}).encode())
        return [instance["MainDicomTags"] for instance in found]

    def study_of(self, sop_instance_uid: str) -> tuple[str, set[str]]:
        """The UID of the study the instance is filed in, and the modalities of its series."""
        [found] = [r for r in self.lookup(sop_instance_uid) if r["Type"] == "Instance"]
        study = self.rest(f"/instances/{found['ID']}/study")
        modalities = {self.rest(f"/series/{s}")["MainDicomTags"].get("Modality") for s in study["Series"]}
        return study["MainDicomTags"]["StudyInstanceUID"], modalities

    def kill(self) -> None:
        """Stop at once, as a crashing or unplugged PACS does."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def split_study(orthanc: Orthanc, images: list[Path], folder: Path):
    """Split the study of ``images`` at the PACS: their study keeps another series (made from
    the first image), the images go to a study of their own (its date, accession and ID not
    the first study's); uploaded through Orthanc's REST API. The header of one image as split
    off (``images`` are rewritten so)."""
    import pydicom

    kept = pydicom.dcmread(images[0])
    kept.SeriesInstanceUID = pydicom.uid.generate_uid()
    kept.SOPInstanceUID = kept.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    kept.save_as(folder / "kept.dcm")
    split_off = pydicom.uid.generate_uid()
    for path in images:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = split_off, "20230102", "101500"
        ds.AccessionNumber, ds.StudyID = "SPLIT-7", "S7"
        ds.save_as(path)
    orthanc.upload([folder / "kept.dcm", *images])
    return pydicom.dcmread(images[0], stop_before_pixels=True)


def basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def orthanc_server(tmp_path_factory, name: str):
    """A running Orthanc in a new folder ``name`` (skipped where none is installed), stopped
    when the generator is closed: ``yield from`` it in a fixture."""
    reason = orthanc_missing()
    if reason:
        pytest.skip(reason)
    server = Orthanc(tmp_path_factory.mktemp(name))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """One Orthanc for the whole session (started once, stopped at the end)."""
    yield from orthanc_server(tmp_path_factory, "orthanc")
