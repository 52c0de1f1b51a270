"""``segview pacs``: find, retrieve and store through a PACS (DICOMweb or DIMSE).

    segview pacs find URL [--patient-id ID] [--patient-name NAME] [--modality MR] [--date FROM-TO]
    segview pacs get URL SERIES_UID -o DIR
    segview pacs store URL FILE...

URL is a DICOMweb base URL (http://host:port/dicom-web) or dimse://AET@host:port.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.pacs import DEFAULT_CALLING_AE, DEFAULT_TIMEOUT_S, MAX_STUDIES, Query, Study, connect
from .common import UserError, progress


def add_pacs_parser(commands) -> None:
    """Add ``pacs`` and its three commands to the ``segview`` subcommands."""
    pacs = commands.add_parser(
        "pacs", help="find, retrieve and store images and SEGs through a PACS",
        description="URL is a DICOMweb base URL (http://host:port/dicom-web) or dimse://AET@host:port "
                    "(AET: the PACS's AE title).")
    actions = pacs.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", help="http(s)://host:port/dicom-web or dimse://AET@host:port")
    common.add_argument("--calling-ae", default=DEFAULT_CALLING_AE,
                        help=f"segview's AE title for DIMSE (default {DEFAULT_CALLING_AE})")
    common.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for the PACS (default {DEFAULT_TIMEOUT_S:g})")

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
    store.add_argument("files", nargs="+", type=Path)
    store.set_defaults(run=_run_store)


def _connect(args):
    if args.timeout <= 0:
        raise UserError("--timeout must be positive")
    return connect(args.url, args.calling_ae, args.timeout)


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
            number = "" if series.number is None else f"#{series.number} "
            images = "?" if series.images is None else series.images
            print(f"    {number}{series.modality or '?'} {series.description or '(no description)'}: "
                  f"{images} images  series {series.uid}")
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
    stored = _connect(args).store(args.files, progress=lambda done, total: progress(done, total, "files"))
    print(f"{len(stored)} file(s) stored in {args.url}")
    return 0
