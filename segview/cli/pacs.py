"""``segview pacs``: find, retrieve and store through a PACS (DICOMweb or DIMSE).

    segview pacs find URL [--patient-id ID] [--patient-name NAME] [--modality MR] [--date FROM-TO]
    segview pacs get URL SERIES_UID -o DIR
    segview pacs store URL FILE... [--force] [--as-is]

URL is a DICOMweb base URL (https://host:port/dicom-web) or dimse://AET@host:port
(dimse+tls:// over TLS). Who you are: ``--user NAME`` with the password from
SEGVIEW_PACS_PASSWORD or asked on the terminal (never on the command line), or a bearer
token from SEGVIEW_PACS_TOKEN or ``--token-command CMD`` (run again when the PACS answers
401). ``--ca-bundle PEM``: the hospital's own certificate authority.
"""
from __future__ import annotations

import argparse
import getpass
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from ..core.pacs import (DEFAULT_CALLING_AE, DEFAULT_TIMEOUT_S, MAX_STUDIES, Credentials, Pacs, PacsAuthError, Query,
                         ReferenceCheckFailed, ReferencedSeries, Study, check_references, connect,
                         held_elsewhere_text, images_text, into_held_study, not_held_text)
from .common import UserError, progress

PASSWORD_VARIABLE, TOKEN_VARIABLE = "SEGVIEW_PACS_PASSWORD", "SEGVIEW_PACS_TOKEN"
#: Seconds a token command may take (a browser sign-in included).
TOKEN_COMMAND_TIMEOUT_S = 300


def add_pacs_parser(commands) -> None:
    """Add ``pacs`` and its three commands to the ``segview`` subcommands."""
    pacs = commands.add_parser(
        "pacs", help="find, retrieve and store images and SEGs through a PACS",
        description="URL is a DICOMweb base URL (https://host:port/dicom-web) or dimse://AET@host:port "
                    "(AET: the PACS's AE title; dimse+tls:// over TLS). Credentials never go in the URL: "
                    f"--user NAME takes the password from {PASSWORD_VARIABLE} or asks for it; a bearer token "
                    f"comes from {TOKEN_VARIABLE} or --token-command.")
    actions = pacs.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", help="https://host:port/dicom-web or dimse[+tls]://AET@host:port")
    common.add_argument("--calling-ae", default=DEFAULT_CALLING_AE,
                        help=f"segview's AE title for DIMSE (default {DEFAULT_CALLING_AE})")
    common.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for the PACS (default {DEFAULT_TIMEOUT_S:g})")
    common.add_argument("--user", default="", metavar="NAME",
                        help=f"user name; the password comes from {PASSWORD_VARIABLE} or is asked on the terminal")
    common.add_argument("--token-command", default="", metavar="CMD",
                        help=f"a shell command that prints a bearer token, run again when the PACS refuses it "
                             f"(else the token in {TOKEN_VARIABLE}, if set)")
    common.add_argument("--ca-bundle", type=Path, metavar="PEM",
                        help="certificate authorities to trust for TLS instead of the system's (a hospital's own)")

    find = actions.add_parser("find", parents=[common], help="list studies and their series")
    find.add_argument("--patient-id", default="")
    find.add_argument("--patient-name", default="", help="family name or its start; * and ? are wildcards")
    find.add_argument("--modality", default="", help="e.g. CT, MR, SEG")
    find.add_argument("--date", default="", metavar="FROM-TO",
                      help="study dates YYYYMMDD-YYYYMMDD (either end may be left out)")
    find.set_defaults(run=_run_find)

    get = actions.add_parser("get", parents=[common], help="retrieve one series into a folder")
    get.add_argument("series_uid", help="Series Instance UID (from `segview pacs find`)")
    get.add_argument("-o", "--output", required=True, type=Path, help="folder for the images")
    get.set_defaults(run=_run_get)

    store = actions.add_parser("store", parents=[common], help="send DICOM files (a SEG) to the PACS")
    store.add_argument("files", nargs="+", type=Path,
                       help="the SEG, and the files of its image series where the PACS does not hold them")
    store.add_argument("--force", action="store_true",
                       help="store a SEG even when the PACS does not hold the image series it refers to")
    store.add_argument("--as-is", action="store_true",
                       help="store a SEG as it is when the PACS holds its image series in another study (by "
                            "default it is stored into that study; its file is never changed)")
    store.set_defaults(run=_run_store)


def _connect(args):
    if args.timeout <= 0:
        raise UserError("--timeout must be positive")
    return connect(args.url, args.calling_ae, args.timeout, _credentials(args), args.ca_bundle)


def _credentials(args) -> Credentials:
    """--user with its password, else a token from --token-command or the environment."""
    if args.user and args.token_command:
        raise UserError("give either --user (and its password) or --token-command, not both")
    if args.user:
        return Credentials(args.user, _password(args.user, args.url))
    if args.token_command:
        return Credentials(token=lambda: _run_token_command(args.token_command))
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    return Credentials.fixed_token(token) if token else Credentials()


def _password(user: str, url: str) -> str:
    """The password of ``user``: the environment's, else asked on the terminal (no echo)."""
    password = os.environ.get(PASSWORD_VARIABLE)
    if password:
        return password
    if not sys.stdin.isatty():
        raise UserError(f"no password for {user}: set {PASSWORD_VARIABLE}, or run segview in a terminal to be asked")
    try:
        return getpass.getpass(f"Password of {user} at {urlsplit(url).hostname}: ")
    except EOFError:
        raise UserError(f"no password for {user}") from None


def _run_token_command(command: str) -> str:
    """What ``command`` (run by the shell) prints: the token. Its errors go to the terminal."""
    try:
        done = subprocess.run(command, shell=True, stdout=subprocess.PIPE, text=True,
                              timeout=TOKEN_COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PacsAuthError(f"The token command did not finish within {TOKEN_COMMAND_TIMEOUT_S} s.") from None
    if done.returncode != 0:
        raise PacsAuthError(f"The token command failed (exit status {done.returncode}).")
    if not done.stdout.strip():
        raise PacsAuthError("The token command printed no token.")
    return done.stdout.strip()


def _run_find(args) -> int:
    query = Query(patient_id=args.patient_id, patient_name=args.patient_name, modality=args.modality,
                  dates=args.date)
    studies = _connect(args).find(query)
    if not studies:
        print("No study matches.")
        return 0
    if len(studies) >= MAX_STUDIES:
        print(f"The first {MAX_STUDIES} studies; narrow the search to see others.")
    for study in studies:
        print(_study_line(study))
        for series in study.series:
            number = "" if series.number is None else f" (series {series.number})"  # a SeriesNumber, maybe shared
            print(f"    {series.modality or '?'} {series.description or '(no description)'}{number}: "
                  f"{images_text(series.images, series.frames, 'image') or '? images'}  UID {series.uid}")
    return 0


def _study_line(study: Study) -> str:
    date = f"{study.date[:4]}-{study.date[4:6]}-{study.date[6:]}" if len(study.date) == 8 else study.date or "no date"
    name = study.patient_name.replace("^", " ").strip() or "(no name)"
    return (f"{date}  {name} [{study.patient_id or 'no ID'}]  {study.description or '(no description)'}  "
            f"{'/'.join(study.modalities) or '?'}  study {study.uid}")


def _run_get(args) -> int:
    paths = _connect(args).get_series(args.series_uid, args.output,
                                      progress=lambda done, total: progress(done, total, "images"))
    print(f"{len(paths)} images in {args.output}")
    return 0


def _run_store(args) -> int:
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}")
    pacs = _connect(args)
    references = _check_referenced_series(pacs, args.files, args.force)
    with tempfile.TemporaryDirectory(prefix="segview-store-") as folder:
        files = _into_held_study(pacs, args.files, references, args.as_is, folder)
        stored = pacs.store(files, progress=lambda done, total: progress(done, total, "files"))
    print(f"{len(stored)} file(s) stored in {args.url}")
    return 0


def _into_held_study(pacs: Pacs, files: list[Path], references: list[ReferencedSeries], as_is: bool,
                     folder: str) -> list[Path]:
    """The files to store: a SEG whose image series the PACS holds in another study (split
    or merged there) as a copy filed into that study, said in a line, unless ``as_is``.
    The PACS's study is the one its viewers open, and the one its administrators made:
    stored as it is, the SEG would sit alone in a study with no images."""
    elsewhere = [reference for reference in references if reference.elsewhere]
    if not elsewhere:
        return files
    text = held_elsewhere_text(f"The PACS at {pacs.url}", elsewhere)
    if as_is:
        print(f"segview: warning: {text}; storing the SEG as it is (--as-is): a viewer that opens a study shows "
              "it without its images.", file=sys.stderr)
        return files
    print(f"{text}: storing the SEG into that study as a new object, with UIDs of its own (the file is unchanged; "
          "--as-is stores it as it is).")
    return into_held_study(files, elsewhere, folder)


def _check_referenced_series(pacs: Pacs, files: list[Path], force: bool) -> list[ReferencedSeries]:
    """The image series the SEGs refer to, as the PACS holds them (none when it cannot
    say). Refuse a SEG whose image series the PACS does not hold (no viewer of the PACS could
    show it) unless ``force``. A PACS that cannot answer the check gets a warning and the
    store goes on: the files were named on purpose, and a script must not stop because an
    archive lacks QIDO-RS or C-FIND; the warning keeps the doubt in its log."""
    try:
        references = check_references(pacs, files)
    except ReferenceCheckFailed as exc:
        print(f"segview: warning: {exc} Storing anyway.", file=sys.stderr)
        return []
    missing = [reference for reference in references if reference.missing]
    if not missing:
        return references
    text = not_held_text(f"The PACS at {pacs.url}", missing)
    if force:
        print(f"segview: warning: {text}; storing it anyway (--force).", file=sys.stderr)
        return references
    raise UserError(f"{text}: no viewer of the PACS could show the SEG. Name the image series' files too (before "
                    "the SEG's) to store them with it, or give --force to store the SEG alone.")
