"""The registry of public datasets: where each comes from, how it unpacks, how to read and verify it.

:func:`load_dataset` looks for ``<data_dir>/<folder>/<key file>`` (``data_dir`` from
:func:`recforge.data.download.data_dir`) and reads it with no network access when it is there; only
otherwise, and only with ``download=True``, it fetches the official archive over https, verifies its
sha256 *before* extracting it (atomically, within a size limit) and reads it. Every registered dataset
has a recorded checksum of its download: the sha256 of the archive for zip files; for the two Amazon
single-file downloads, for which no trustworthy sha256 of the gzip bytes is published, the sha256 of the
gunzipped JSON lines (checked on the downloaded temporary file before it is put in place). Where the
sha256 of a key file is recorded (``check_file``/``check_sha256``, computed from the official files) a
found copy is verified before it is read too.
"""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlparse

from recforge.data.download import ChecksumError, DownloadError, check_url, extract_zip, fetch_file, sha256_file
from recforge.data.download import data_dir as resolve_data_dir
from recforge.data.readers import (
    RawDataset,
    read_amazon_reviews,
    read_lastfm_hetrec,
    read_movielens_1m,
    read_movielens_10m,
    read_movielens_100k,
    read_movielens_csv,
    read_msd_taste_profile,
)

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "UnknownDatasetError",
    "dataset_info",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]


@dataclass(frozen=True)
class DatasetSpec:
    """How to obtain and read one public dataset.

    ``folder`` is the folder the official archive unzips to (for single-file downloads: the folder the
    file is put in); ``files`` are the names of the key file that marks the dataset as present, in
    order of preference (e.g. a plain and a gzipped form); ``reader`` gets the folder
    (``reads="folder"``) or the key file (``reads="file"``). ``sha256`` is the checksum of the download
    itself, verified before anything is extracted (None only where no trustworthy value is known);
    ``check_sha256`` is that of ``check_file`` (also checked on the gunzipped content of
    ``check_file + ".gz"``; for a single-file download it is checked on the temporary download before
    it is put in place). A zip download needs ``sha256``; a single file needs ``sha256`` or
    ``check_sha256`` (:func:`register_dataset` refuses a dataset that could not be verified).
    ``archive="manual"``: no trustworthy checksum of the download is published, so recforge never downloads it;
    the user fetches ``url`` and puts the key file in ``folder`` (a missing copy is an error saying so).
    """

    name: str
    url: str
    folder: str
    files: tuple[str, ...]
    reader: Callable[[Path], RawDataset]
    reads: Literal["folder", "file"] = "folder"
    archive: Literal["zip", "file", "manual"] = "zip"
    sha256: str | None = None
    check_file: str | None = None
    check_sha256: str | None = None
    description: str = ""
    citation: str = ""
    licence: str = ""

    @property
    def download_name(self) -> str:
        """The file name of the download (the last part of the URL)."""
        return PurePosixPath(urlparse(self.url).path).name


class UnknownDatasetError(KeyError, ValueError):
    """No dataset of that name is registered (both a KeyError and a ValueError)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


_GROUPLENS = "https://files.grouplens.org/datasets"
_MOVIELENS_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. "
    "ACM Transactions on Interactive Intelligent Systems (TiiS) 5, 4, Article 19. https://doi.org/10.1145/2827872"
)
_MOVIELENS_LICENCE = (
    "GroupLens usage licence: research use only, no commercial use without permission, acknowledge the "
    "data set in publications (cite), no redistribution without permission (see the README in the archive)."
)
_AMAZON_2014_CITATION = (
    "Ruining He and Julian McAuley. 2016. Ups and downs: Modeling the visual evolution of fashion trends with "
    "one-class collaborative filtering. WWW 2016; Julian McAuley, Christopher Targett, Qinfeng Shi and Anton van "
    "den Hengel. 2015. Image-based recommendations on styles and substitutes. SIGIR 2015."
)
_AMAZON_LICENCE = "Research use; cite the paper (see the dataset page of the McAuley lab, UCSD)."


def _movielens(
    name: str, archive: str, folder: str, reader: Callable[[Path], RawDataset], key: str, **kw: Any
) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        url=f"{_GROUPLENS}/movielens/{archive}",
        folder=folder,
        files=(key,),
        reader=reader,
        citation=_MOVIELENS_CITATION,
        licence=_MOVIELENS_LICENCE,
        **kw,
    )


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, *, overwrite: bool = False) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASETS` (a name already taken needs ``overwrite=True``).

    The URL must be ``https://`` (or a local ``file://`` copy), and the download must be verifiable
    before use: a zip needs its ``sha256``, a single file its ``sha256`` or ``check_sha256``.
    """
    if spec.name in DATASETS and not overwrite:
        raise ValueError(f"a dataset named {spec.name!r} is already registered")
    if not spec.files:
        raise ValueError(f"dataset {spec.name!r} needs at least one key file")
    try:
        check_url(spec.url)
    except DownloadError as exc:
        raise ValueError(f"dataset {spec.name!r}: {exc}") from None
    if spec.archive == "manual":  # never downloaded: nothing unverified can be installed
        DATASETS[spec.name] = spec
        return spec
    if spec.archive == "zip" and spec.sha256 is None:
        raise ValueError(f"dataset {spec.name!r}: a zip download needs its sha256, to verify it before extraction")
    if spec.sha256 is None and spec.check_sha256 is None:
        raise ValueError(f"dataset {spec.name!r}: record the sha256 of the download or of its content (check_sha256)")
    DATASETS[spec.name] = spec
    return spec


for _spec in (
    _movielens(
        "ml-100k",
        "ml-100k.zip",
        "ml-100k",
        read_movielens_100k,
        "u.data",
        # sha256 of ml-100k.zip (4,924,029 bytes): tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt;
        # the same value in ISG-Siegen/OmniRec src/omnirec/data_loaders/movielens_100k.py
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        check_file="u.data",
        # sha256 of u.data in the official ml-100k.zip
        check_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        description="MovieLens 100K: 100,000 ratings (1-5) from 943 users on 1,682 movies (1998), with "
        "demographics, genres and the official u1-u5/ua/ub splits.",
    ),
    _movielens(
        "ml-1m",
        "ml-1m.zip",
        "ml-1m",
        read_movielens_1m,
        "ratings.dat",
        # sha256 of ml-1m.zip (5,917,549 bytes): tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt;
        # the same value in ISG-Siegen/OmniRec src/omnirec/data_loaders/movielens_small.py (GroupLens MD5
        # c4d9eecfca2ab87c1945afe126590906)
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        description="MovieLens 1M: 1,000,209 ratings (1-5) from 6,040 users on about 3,900 movies (2003), "
        "with demographics and genres.",
    ),
    _movielens(
        "ml-10m",
        "ml-10m.zip",
        "ml-10M100K",
        read_movielens_10m,
        "ratings.dat",
        # sha256 of ml-10m.zip (65,566,137 bytes): not in tensorflow/datasets; ISG-Siegen/OmniRec
        # src/omnirec/data_loaders/movielens_small.py, and two independent projects that pin the same value
        # next to GroupLens's published MD5 of the archive (ml-10m.zip.md5: ce571fd55effeba0271552578f2648bd)
        sha256="813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
        description="MovieLens 10M: 10,000,054 ratings (0.5-5) and 95,580 tags from 71,567 users on 10,681 "
        "movies (2009).",
    ),
    _movielens(
        "ml-20m",
        "ml-20m.zip",
        "ml-20m",
        read_movielens_csv,
        "ratings.csv",
        # sha256 of ml-20m.zip (198,702,078 bytes): tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt
        # (also pinned, with GroupLens's MD5 cd245b17a1ae2cc31bb14903e1204af3, by several other projects)
        sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        description="MovieLens 20M: 20,000,263 ratings (0.5-5) and 465,564 tags from 138,493 users on 27,278 "
        "movies (2015).",
    ),
    _movielens(
        "ml-25m",
        "ml-25m.zip",
        "ml-25m",
        read_movielens_csv,
        "ratings.csv",
        # sha256 of ml-25m.zip (261,978,986 bytes): tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt
        # (also pinned, md5 cross-checked against GroupLens's 6b51fb2759a8657d3bfcbfc42b592ada, by other projects)
        sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        description="MovieLens 25M: 25,000,095 ratings (0.5-5) and 1,093,360 tags from 162,541 users on "
        "62,423 movies (2019).",
    ),
    _movielens(
        "ml-latest-small",
        "ml-latest-small.zip",
        "ml-latest-small",
        read_movielens_csv,
        "ratings.csv",
        # sha256 of ml-latest-small.zip, 2018-09 release (978,202 bytes): tensorflow/datasets,
        # tensorflow_datasets/url_checksums/movielens.txt. GroupLens may replace "latest" archives: a new
        # release then fails this check with a message saying so.
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        check_file="ratings.csv",
        # sha256 of ratings.csv in the 2018-09 release of ml-latest-small.zip
        check_sha256="aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
        description="MovieLens latest-small (2018-09 release): 100,836 ratings (0.5-5) and 3,683 tags from "
        "610 users on 9,742 movies.",
    ),
    DatasetSpec(
        name="lastfm-2k",
        url=f"{_GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip",
        folder="hetrec2011-lastfm-2k",  # the archive is flat: its files are extracted into this folder
        files=("user_artists.dat",),
        reader=read_lastfm_hetrec,
        # sha256 of hetrec2011-lastfm-2k.zip: ISG-Siegen/OmniRec src/omnirec/data_loaders/hetrec_lastfm.py, and the
        # same value pinned by two independent projects that verified their download
        sha256="6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c",
        check_file="user_artists.dat",
        # sha256 of user_artists.dat in the official hetrec2011-lastfm-2k.zip
        check_sha256="254272fa721c3935e8be286d28c051b206844307128698ab4eaa41d483379416",
        description="HetRec 2011 Last.fm: 92,834 user-artist play counts from 1,892 users on 17,632 artists, "
        "with 186,479 tag assignments.",
        citation="Iván Cantador, Peter Brusilovsky and Tsvi Kuflik. 2011. 2nd Workshop on Information "
        "Heterogeneity and Fusion in Recommender Systems (HetRec 2011). RecSys 2011. Data: Last.fm, "
        "http://www.lastfm.com",
        licence="Non-commercial use (HetRec 2011 readme); commercial use needs Last.fm's permission.",
    ),
    DatasetSpec(
        name="msd-taste-profile",
        url="https://millionsongdataset.com/sites/default/files/challenge/train_triplets.txt.zip",
        folder="msd-taste-profile",
        files=("train_triplets.txt", "train_triplets.txt.gz"),
        reader=read_msd_taste_profile,
        archive="manual",  # no trustworthy sha256 of train_triplets.txt.zip is published: fetched by hand
        description="Million Song Dataset taste profile (Echo Nest): 48,373,586 user-song play counts from "
        "1,019,318 users on 384,546 songs; Last.fm-MSD song tags (lastfm_tags.db or lastfm_train/, with "
        "unique_tracks.txt) are read when placed beside train_triplets.txt.",
        citation="Thierry Bertin-Mahieux, Daniel P.W. Ellis, Brian Whitman and Paul Lamere. 2011. The Million Song "
        "Dataset. ISMIR 2011.",
        licence="Research use (Million Song Dataset terms; the taste profile and Last.fm tags have their own "
        "terms: see millionsongdataset.com).",
    ),
    DatasetSpec(
        name="amazon-instruments",
        url="https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Musical_Instruments_5.json.gz",
        folder="amazon-2014-5core-musical-instruments",
        files=("reviews_Musical_Instruments_5.json", "reviews_Musical_Instruments_5.json.gz"),
        reader=read_amazon_reviews,
        reads="file",
        archive="file",
        check_file="reviews_Musical_Instruments_5.json",
        # No public sha256 of the .json.gz bytes was found; this is the sha256 of the JSON lines (the gunzipped
        # download, computed from the official file), checked on the download before it is put in place
        check_sha256="8e1aaab451ba61484dfe393f53d11886246bc426c7046b180b62352580f68c1d",
        description="Amazon 2014 Musical Instruments 5-core: 10,261 reviews (1-5, with texts) from 1,429 "
        "users on 900 products.",
        citation=_AMAZON_2014_CITATION,
        licence=_AMAZON_LICENCE,
    ),
    DatasetSpec(
        name="amazon-instant-video",
        url="https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Amazon_Instant_Video_5.json.gz",
        folder="amazon-2014-5core-instant-video",
        files=("reviews_Amazon_Instant_Video_5.json", "reviews_Amazon_Instant_Video_5.json.gz"),
        reader=read_amazon_reviews,
        reads="file",
        archive="manual",  # no trustworthy sha256 of the download is published: fetched by hand (gzipped or not)
        description="Amazon 2014 Amazon Instant Video 5-core (the PyTorch recommender tutorial's file): 37,126 "
        "reviews (1-5, with texts) from 5,130 users on 1,685 videos.",
        citation=_AMAZON_2014_CITATION,
        licence=_AMAZON_LICENCE,
    ),
    DatasetSpec(
        name="amazon-beauty",
        url="https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/All_Beauty_5.json.gz",
        folder="amazon-2018-5core-all-beauty",
        files=("All_Beauty_5.json.gz", "All_Beauty_5.json"),
        reader=read_amazon_reviews,
        reads="file",
        archive="file",
        check_file="All_Beauty_5.json",
        # No public sha256 of the .json.gz bytes was found (and gzip bytes vary with the compressor); this is the
        # sha256 of the JSON lines (the gunzipped download), checked on the download before it is put in place
        check_sha256="2216c07d74d92744fefcff3cfe9eac5831634bcc77bfb2a47352f7d51f96cb86",
        description="Amazon 2018 All Beauty 5-core: 5,269 reviews (1-5, with texts) from 991 users on 85 products.",
        citation="Jianmo Ni, Jiacheng Li and Julian McAuley. 2019. Justifying recommendations using "
        "distantly-labeled reviews and fine-grained aspects. EMNLP-IJCNLP 2019.",
        licence=_AMAZON_LICENCE,
    ),
):
    register_dataset(_spec)


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; an unknown name raises :class:`UnknownDatasetError`."""
    spec = DATASETS.get(name) or DATASETS.get(name.strip().lower())
    if spec is None:
        close = difflib.get_close_matches(name.strip().lower(), list(DATASETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownDatasetError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(list_datasets())}")
    return spec


def _find(spec: DatasetSpec, folder: Path) -> Path | None:
    for name in spec.files:
        if (folder / name).is_file():
            return folder / name
    return None


def _verify(spec: DatasetSpec, path: Path, *, name: str | None = None) -> None:
    """Raise :class:`ChecksumError` when ``path`` is the recorded check file and its sha256 differs.

    ``name`` is the file's name when it differs from ``path``'s (a temporary download). A truncated or
    corrupt ``.gz`` copy is a ChecksumError naming it too.
    """
    if spec.check_file is None or spec.check_sha256 is None:
        return
    name = name or path.name
    if name == spec.check_file:
        got = sha256_file(path)
    elif name == spec.check_file + ".gz":
        got = sha256_file(path, decompress=True)
    else:
        return
    if got != spec.check_sha256:
        raise ChecksumError(
            f"{path} has sha256 {got}, but the official {spec.name} {spec.check_file} has {spec.check_sha256}: "
            f"the copy is damaged or from another release; delete {path.parent} to download it again, "
            f"or pass verify=False to read it anyway"
        )


def _manual_hint(spec: DatasetSpec, folder: Path) -> str:
    if spec.archive in ("zip", "manual"):
        return f"unzip it so that {folder / spec.files[0]} exists"
    return f"save it as {folder / spec.download_name}"


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    verify: bool = True,
    progress: bool = True,
) -> RawDataset:
    """Read the registered dataset ``name`` from ``<data_dir>/<folder>/``, downloading it first if absent.

    With the key file present nothing touches the network. Otherwise, with ``download=True``, the
    official file is fetched (into ``<data_dir>/downloads/`` for archives, removed after extraction),
    verified and extracted atomically; with ``download=False`` a :class:`FileNotFoundError` says what
    to fetch and where to put it. ``verify`` checks the recorded sha256 of the key file.
    """
    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    folder = root / spec.folder
    found = _find(spec, folder)
    if found is None:
        hint = _manual_hint(spec, folder)
        if spec.archive == "manual":
            raise FileNotFoundError(
                f"dataset {spec.name!r} not found: no {' or '.join(spec.files)} in {folder}; recforge does not "
                f"download it (no published checksum to verify it with): download {spec.url} and {hint}"
            )
        if not download:
            raise FileNotFoundError(
                f"dataset {spec.name!r} not found: no {' or '.join(spec.files)} in {folder}; "
                f"download {spec.url} and {hint}, or use download=True"
            )
        found = _download(spec, root, folder, hint=hint, verify=verify, progress=progress)
    elif verify:
        _verify(spec, found)
    raw = spec.reader(found if spec.reads == "file" else folder)
    return replace(raw, name=spec.name)


def _download(spec: DatasetSpec, root: Path, folder: Path, *, hint: str, verify: bool, progress: bool) -> Path:
    if spec.archive == "zip":
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise FileExistsError(
                f"{folder} exists but has no {spec.files[0]}: complete it by hand ({spec.url}; {hint}) "
                f"or remove it to download {spec.name!r} again"
            )
        # fetch_file checks the archive's sha256 on the temporary download: nothing unverified is extracted
        archive = fetch_file(
            spec.url, root / "downloads" / spec.download_name, spec.sha256, progress=progress, manual_hint=hint
        )
        extract_zip(archive, folder)
        archive.unlink(missing_ok=True)
        created = folder
    else:

        def check(tmp: Path) -> None:
            _verify(spec, tmp, name=spec.download_name)

        created = fetch_file(
            spec.url,
            folder / spec.download_name,
            spec.sha256,
            progress=progress,
            manual_hint=hint,
            verify=check if verify else None,
        )
    found = _find(spec, folder)
    if found is None:
        raise DownloadError(f"the download of {spec.url} holds no {spec.files[0]}; fetch it by hand and {hint}")
    if verify and spec.archive == "zip":
        try:
            _verify(spec, found)
        except ChecksumError as exc:
            if created.is_dir():
                shutil.rmtree(created, ignore_errors=True)
            else:
                created.unlink(missing_ok=True)
            raise DownloadError(
                f"the download of {spec.url} does not match the recorded checksum ({exc}); fetch it by hand and {hint}"
            ) from exc
    return found


def dataset_info(name: str, *, data_dir: str | Path | None = None) -> dict[str, Any]:
    """What the CLI shows about ``name``: url, recorded checksums, folder, path, presence (no hashing), texts."""
    spec = get_spec(name)
    folder = resolve_data_dir(data_dir) / spec.folder
    found = _find(spec, folder)
    return {
        "name": spec.name,
        "url": spec.url,
        "sha256": spec.sha256,
        "check_file": spec.check_file,
        "check_sha256": spec.check_sha256,
        "folder": spec.folder,
        "path": str(folder),
        "present": found is not None,
        "files": list(spec.files),
        "description": spec.description,
        "citation": spec.citation,
        "licence": spec.licence,
    }
