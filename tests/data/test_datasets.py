"""Dataset registry, data directory, verified downloads (served from local files: no network) and extraction."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from recforge.data import datasets as ds
from recforge.data import download as dl
from recforge.data.datasets import DATASETS, UnknownDatasetError, dataset_info, get_spec, list_datasets, load_dataset
from recforge.data.download import ChecksumError, DownloadError, data_dir, extract_zip, fetch_file, sha256_file

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = {
    "msd-taste-profile",
    "ml-100k",
    "ml-1m",
    "ml-10m",
    "ml-20m",
    "ml-25m",
    "ml-latest-small",
    "lastfm-2k",
    "amazon-instruments",
    "amazon-instant-video",
    "amazon-beauty",
}


def real_root() -> Path:
    root = os.environ.get("RECFORGE_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("RECFORGE_DATA is not set or missing")
    return Path(root)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any URL access fail the test; returns the list of URLs that were asked for."""
    calls: list[str] = []

    def refuse(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", request))
        raise AssertionError(f"network access to {calls[-1]}")

    monkeypatch.setattr(dl, "_urlopen", refuse)  # the one place download.py opens a URL
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(path: Path, files: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
    return path


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------------- registry


def test_registry_names_and_specs() -> None:
    assert set(list_datasets()) == NAMES
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.url.startswith("https://") and spec.folder and spec.files
        for digest in (spec.sha256, spec.check_sha256):
            assert digest is None or re.fullmatch(r"[0-9a-f]{64}", digest)
        assert spec.description and spec.citation and spec.licence
    assert get_spec("ml-10m").folder == "ml-10M100K"
    assert get_spec("lastfm-2k").url == "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip"


def test_every_registered_download_is_verified_before_use() -> None:
    for name, spec in DATASETS.items():
        if spec.archive == "manual":  # never downloaded (no published checksum): fetched by hand
            continue
        if spec.archive == "zip":  # the archive's own sha256, checked before extraction
            assert spec.sha256 is not None, name
        else:  # single files: the download's sha256 or that of its (gunzipped) content, checked before install
            assert spec.sha256 is not None or (spec.check_sha256 is not None and spec.check_file), name
    for name in ("ml-1m", "ml-10m", "ml-20m", "ml-25m"):  # the four the issue found unverified
        assert get_spec(name).sha256 is not None
    assert get_spec("amazon-instruments").url.startswith("https://snap.stanford.edu/")
    info = dataset_info("ml-20m")
    assert info["sha256"] == "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3"
    assert dataset_info("amazon-beauty")["check_sha256"] == get_spec("amazon-beauty").check_sha256


def test_register_dataset_refuses_plain_http_and_unverifiable_downloads() -> None:
    base = dataclasses.replace(get_spec("ml-1m"), name="mine")
    with pytest.raises(ValueError, match="only https"):
        ds.register_dataset(dataclasses.replace(base, url="http://example.org/ml-1m.zip"))
    with pytest.raises(ValueError, match="only https"):
        ds.register_dataset(dataclasses.replace(base, url="ftp://example.org/ml-1m.zip"))
    with pytest.raises(ValueError, match="sha256"):
        ds.register_dataset(dataclasses.replace(base, sha256=None))
    assert "mine" not in DATASETS


def test_unknown_name_is_one_clear_line() -> None:
    with pytest.raises(KeyError) as info:
        load_dataset("ml-100")
    err = info.value
    assert isinstance(err, UnknownDatasetError) and isinstance(err, ValueError)
    message = str(err)
    assert "\n" not in message and not message.startswith("'")
    assert "'ml-100'" in message and "did you mean 'ml-100k'" in message
    assert all(name in message for name in NAMES)


def test_dataset_info(tmp_path: Path) -> None:
    info = dataset_info("ml-1m", data_dir=tmp_path)
    assert info["url"] == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert info["folder"] == "ml-1m" and info["present"] is False and info["description"]
    shutil.copytree(FIXTURES / "ml-1m", tmp_path / "ml-1m")
    assert dataset_info("ml-1m", data_dir=tmp_path)["present"] is True
    assert dataset_info("ml-1m", data_dir=tmp_path)["path"] == str(tmp_path / "ml-1m")


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "env"))
    assert data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("RECFORGE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "recforge"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECFORGE_DATA", "rel/data")
    assert data_dir() == tmp_path / "rel" / "data"


# ---------------------------------------------------------------------------------------------------- present data


def test_present_fixture_folder_is_read_without_network(tmp_path: Path, no_network: list[str]) -> None:
    shutil.copytree(FIXTURES / "ml-1m", tmp_path / "ml-1m")
    raw = load_dataset("ml-1m", data_dir=tmp_path)
    assert raw.name == "ml-1m" and len(raw.interactions) == 5
    shutil.copytree(FIXTURES / "hetrec2011-lastfm-2k", tmp_path / "hetrec2011-lastfm-2k")
    with pytest.raises(ChecksumError, match=r"user_artists\.dat"):  # not the official file
        load_dataset("lastfm-2k", data_dir=tmp_path)
    assert load_dataset("lastfm-2k", data_dir=tmp_path, verify=False).name == "lastfm-2k"
    assert no_network == []


def test_missing_without_download_says_where(tmp_path: Path, no_network: list[str]) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("ml-10m", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "https://files.grouplens.org/datasets/movielens/ml-10m.zip" in message
    assert str(tmp_path / "ml-10M100K" / "ratings.dat") in message
    assert no_network == []


def test_real_datasets_present_no_network(no_network: list[str]) -> None:
    root = real_root()
    expected = {
        "ml-100k": 100_000,
        "ml-latest-small": 100_836,
        "lastfm-2k": 92_834,
        "amazon-instruments": 10_261,
        "amazon-beauty": 5_269,
    }
    for name, rows in expected.items():
        if not dataset_info(name, data_dir=root)["present"]:
            continue
        raw = load_dataset(name, data_dir=root)  # verifies the recorded checksum of the key file
        assert raw.name == name and len(raw.interactions) == rows
    assert no_network == []


def test_real_checksums_match_records() -> None:
    root = real_root()
    for spec in DATASETS.values():
        if spec.check_sha256 is None:
            continue
        for name in spec.files:
            path = root / spec.folder / name
            if path.is_file():
                decompress = name == spec.check_file + ".gz"
                assert sha256_file(path, decompress=decompress) == spec.check_sha256, path


# ---------------------------------------------------------------------------------------------------- fetch_file


def test_fetch_file_verifies_and_renames_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)
    dest = tmp_path / "cache" / "file.bin"
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy_replace(src, dst):
        renames.append((Path(src), Path(dst)))
        assert not Path(dst).exists()  # the destination appears only complete
        real_replace(src, dst)

    monkeypatch.setattr(dl.os, "replace", spy_replace)
    out = fetch_file(source.as_uri(), dest, sha(source.read_bytes()), progress=False)
    assert out == dest and dest.read_bytes() == source.read_bytes()
    assert len(renames) == 1 and renames[0][1] == dest and renames[0][0].parent == dest.parent
    assert no_temp_files(dest.parent)


def test_fetch_file_wrong_checksum_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(DownloadError) as info:
        fetch_file(source.as_uri(), dest, "0" * 64, progress=False)
    message = str(info.value)
    assert source.as_uri() in message and str(dest) in message and "sha256" in message
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_fetch_file_failure_mid_stream_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(io.BytesIO):
        headers: ClassVar[dict[str, str]] = {"Content-Length": "100"}

        def read(self, n: int = -1) -> bytes:
            if self.tell() >= 10:
                raise ConnectionResetError("connection reset by peer")
            return super().read(10)

    monkeypatch.setattr(dl, "_urlopen", lambda *a, **k: Broken(b"y" * 100))
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="connection reset") as info:
        fetch_file("https://example.org/file.bin", dest, None, progress=False, manual_hint="put it in /x/y")
    assert "https://example.org/file.bin" in str(info.value) and "put it in /x/y" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_fetch_file_present_file_needs_no_network(tmp_path: Path, no_network: list[str]) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"cached")
    assert fetch_file("https://example.org/file.bin", dest, sha(b"cached")) == dest
    assert fetch_file("https://example.org/file.bin", dest, None) == dest
    assert no_network == []


def test_fetch_file_replaces_a_corrupt_copy(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"good bytes")
    dest = tmp_path / "cache" / "file.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"truncated")
    fetch_file(source.as_uri(), dest, sha(b"good bytes"), progress=False)
    assert dest.read_bytes() == b"good bytes"


# ---------------------------------------------------------------------------------------------------- extract_zip


def test_extract_zip_nested_and_flat(tmp_path: Path) -> None:
    nested = make_zip(tmp_path / "a.zip", {"ml-1m/ratings.dat": b"1::2::3::4\n", "ml-1m/README": b"r"})
    assert extract_zip(nested, tmp_path / "data" / "ml-1m") == tmp_path / "data" / "ml-1m"
    assert sorted(p.name for p in (tmp_path / "data" / "ml-1m").iterdir()) == ["README", "ratings.dat"]
    flat = make_zip(tmp_path / "b.zip", {"user_artists.dat": b"x", "tags.dat": b"y", "__MACOSX/._x": b""})
    (tmp_path / "data" / "flat").mkdir()  # an empty folder is fine
    extract_zip(flat, tmp_path / "data" / "flat")
    assert sorted(p.name for p in (tmp_path / "data" / "flat").iterdir()) == ["tags.dat", "user_artists.dat"]
    assert no_temp_files(tmp_path / "data")


def test_extract_zip_refuses_unsafe_or_existing(tmp_path: Path) -> None:
    evil = make_zip(tmp_path / "evil.zip", {"../escape.txt": b"x"})
    with pytest.raises(DownloadError, match="unsafe"):
        extract_zip(evil, tmp_path / "data" / "evil")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "evil").exists()
    assert no_temp_files(tmp_path / "data")
    good = make_zip(tmp_path / "good.zip", {"x/a": b"1"})
    (tmp_path / "data" / "busy").mkdir()
    (tmp_path / "data" / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        extract_zip(good, tmp_path / "data" / "busy")
    assert (tmp_path / "data" / "busy" / "mine.txt").read_text() == "keep me"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a valid zip"):
        extract_zip(broken, tmp_path / "data" / "broken")


# ---------------------------------------------------------------------------------------------------- load_dataset


def serve_as(monkeypatch: pytest.MonkeyPatch, name: str, archive: Path, **changes: object) -> None:
    """Register ``name`` with its official URL replaced by a file:// URL of ``archive``."""
    spec = dataclasses.replace(DATASETS[name], url=archive.as_uri(), **changes)
    monkeypatch.setitem(DATASETS, name, spec)


def test_load_dataset_downloads_extracts_then_reads_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"ml-1m/{p.name}": p for p in (FIXTURES / "ml-1m").iterdir()}
    archive = make_zip(tmp_path / "ml-1m.zip", files)
    serve_as(monkeypatch, "ml-1m", archive, sha256=sha(archive.read_bytes()))
    root = tmp_path / "data"
    raw = load_dataset("ml-1m", data_dir=root, progress=False)
    assert raw.name == "ml-1m" and len(raw.interactions) == 5
    assert (root / "ml-1m" / "ratings.dat").is_file()
    assert not (root / "downloads" / "ml-1m.zip").exists()  # the archive is removed once extracted
    assert no_temp_files(root)

    def refuse(*args, **kwargs):
        raise AssertionError("network used although the data is present")

    monkeypatch.setattr(dl, "_urlopen", refuse)
    monkeypatch.setattr(ds, "fetch_file", refuse)
    assert len(load_dataset("ml-1m", data_dir=root).interactions) == 5


def test_load_dataset_flat_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = FIXTURES / "hetrec2011-lastfm-2k"
    archive = make_zip(tmp_path / "hetrec2011-lastfm-2k.zip", {p.name: p for p in folder.iterdir()})
    key = (folder / "user_artists.dat").read_bytes()
    serve_as(monkeypatch, "lastfm-2k", archive, sha256=sha(archive.read_bytes()), check_sha256=sha(key))
    raw = load_dataset("lastfm-2k", data_dir=tmp_path / "data", progress=False)
    assert len(raw.interactions) == 3 and (tmp_path / "data" / "hetrec2011-lastfm-2k" / "artists.dat").is_file()


def test_load_dataset_wrong_archive_checksum_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path / "ml-1m.zip", {"ml-1m/ratings.dat": b"1::2::3::4\n"})
    serve_as(monkeypatch, "ml-1m", archive, sha256="f" * 64)
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        load_dataset("ml-1m", data_dir=root, progress=False)
    assert archive.as_uri() in str(info.value) and str(root / "ml-1m" / "ratings.dat") in str(info.value)
    assert not (root / "ml-1m").exists()
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_load_dataset_key_file_checksum_after_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": b"1\t2\t3\t4\n"})
    # the archive passes its (replaced) sha256; the recorded sha256 of the official u.data still applies
    serve_as(monkeypatch, "ml-100k", archive, sha256=sha(archive.read_bytes()))
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="checksum"):
        load_dataset("ml-100k", data_dir=root, progress=False)
    assert not (root / "ml-100k").exists()


def test_load_dataset_single_gz_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = (FIXTURES / "amazon" / "reviews_Tiny_5.json").read_bytes()
    served = tmp_path / "served" / "All_Beauty_5.json.gz"
    served.parent.mkdir()
    served.write_bytes(gzip.compress(content))
    serve_as(monkeypatch, "amazon-beauty", served, check_sha256=sha(content))  # checked on the gunzipped bytes
    root = tmp_path / "data"
    raw = load_dataset("amazon-beauty", data_dir=root, progress=False)
    assert raw.name == "amazon-beauty" and len(raw.interactions) == 2
    assert (root / "amazon-2018-5core-all-beauty" / "All_Beauty_5.json.gz").is_file()


def test_load_dataset_refuses_to_overwrite_a_partial_folder(tmp_path: Path, no_network: list[str]) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "movies.dat").write_text("1::A (2000)::Drama\n")
    with pytest.raises(FileExistsError, match=r"ratings\.dat"):
        load_dataset("ml-1m", data_dir=tmp_path)
    assert no_network == []


# ---------------------------------------------------------------------------------------------------- https only


@pytest.mark.parametrize("url", ["http://example.org/a.zip", "ftp://example.org/a.zip", "gopher://example.org/a"])
def test_fetch_file_refuses_insecure_schemes(tmp_path: Path, no_network: list[str], url: str) -> None:
    with pytest.raises(DownloadError, match=r"only https://") as info:
        fetch_file(url, tmp_path / "a.zip", "0" * 64, progress=False)
    assert url in str(info.value)
    assert no_network == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("newurl", "allowed"),
    [
        ("http://files.example.org/a.zip", False),  # scheme downgrade
        ("ftp://files.example.org/a.zip", False),
        ("HTTP://files.example.org/a.zip", False),
        ("https://mirror.example.org/a.zip", True),
    ],
)
def test_redirects_may_not_leave_https(newurl: str, allowed: bool) -> None:
    handler = dl.HttpsOnlyRedirectHandler()
    request = urllib.request.Request("https://files.example.org/a.zip", headers={"User-Agent": "t"})
    response = io.BytesIO(b"")
    if allowed:
        follow = handler.redirect_request(request, response, 302, "Found", {}, newurl)
        assert follow is not None and follow.full_url == newurl
    else:
        with pytest.raises(DownloadError, match="only https") as info:
            handler.redirect_request(request, response, 301, "Moved", {}, newurl)
        assert newurl in str(info.value) and "https://files.example.org/a.zip" in str(info.value)
        assert response.closed


def test_downloads_go_through_the_https_only_redirect_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[urllib.request.BaseHandler] = []

    class Spy(dl.HttpsOnlyRedirectHandler):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(dl, "HttpsOnlyRedirectHandler", Spy)
    with dl._urlopen(urllib.request.Request((FIXTURES / "ml-1m" / "ratings.dat").as_uri()), 5) as response:
        assert response.read(4) == b"1::1"
    assert len(made) == 1
    opener = made[0].parent  # the opener the download used: its only redirect handler is ours
    assert [h for h in opener.handlers if isinstance(h, urllib.request.HTTPRedirectHandler)] == made


def test_downloads_get_the_usual_file_mode(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    old = os.umask(0o022)
    try:
        out = fetch_file(source.as_uri(), tmp_path / "cache" / "file.bin", sha(b"payload"), progress=False)
        folder = extract_zip(make_zip(tmp_path / "a.zip", {"x/a.txt": b"1"}), tmp_path / "data" / "x")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
    assert folder.stat().st_mode & 0o777 == 0o755


# ---------------------------------------------------------------------------------------------------- verification


def test_archive_is_verified_before_extraction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path / "ml-10m.zip", {"ml-10M100K/ratings.dat": b"1::2::3::4\n"})
    serve_as(monkeypatch, "ml-10m", archive)  # the recorded sha256 of the official ml-10m.zip: no match
    extracted: list[Path] = []
    monkeypatch.setattr(ds, "extract_zip", lambda *a, **k: extracted.append(Path(a[0])))
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="sha256") as info:
        load_dataset("ml-10m", data_dir=root, progress=False)
    assert get_spec("ml-10m").sha256 in str(info.value)
    assert extracted == [] and [p for p in root.rglob("*") if p.is_file()] == []


def test_single_file_content_is_verified_before_it_is_put_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served" / "All_Beauty_5.json.gz"
    served.parent.mkdir()
    served.write_bytes(gzip.compress(b'{"reviewerID": "a", "asin": "b", "overall": 5.0, "unixReviewTime": 1}\n'))
    serve_as(monkeypatch, "amazon-beauty", served)  # keeps the recorded sha256 of the official JSON lines
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="failed its check") as info:
        load_dataset("amazon-beauty", data_dir=root, progress=False)
    assert served.as_uri() in str(info.value)
    assert [p for p in root.rglob("*") if p.is_file()] == []
    served.write_bytes(gzip.compress(b"x" * 1000)[:20])  # truncated gzip: refused the same way
    with pytest.raises(DownloadError, match="not a complete gzip file"):
        load_dataset("amazon-beauty", data_dir=root, progress=False)
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_truncated_json_gz_of_a_registered_dataset_is_a_clear_error(tmp_path: Path, no_network: list[str]) -> None:
    folder = tmp_path / "amazon-2018-5core-all-beauty"
    folder.mkdir()
    content = (FIXTURES / "amazon" / "reviews_Tiny_5.json").read_bytes() * 200
    (folder / "All_Beauty_5.json.gz").write_bytes(gzip.compress(content)[:300])
    with pytest.raises(ChecksumError, match="not a complete gzip file") as info:
        load_dataset("amazon-beauty", data_dir=tmp_path)
    assert str(folder / "All_Beauty_5.json.gz") in str(info.value)
    from recforge.data.readers import DataFormatError

    with pytest.raises(DataFormatError, match="truncated or corrupt") as info2:
        load_dataset("amazon-beauty", data_dir=tmp_path, verify=False)
    assert str(folder / "All_Beauty_5.json.gz") in str(info2.value)
    with pytest.raises(ChecksumError, match="not a complete gzip file"):
        sha256_file(folder / "All_Beauty_5.json.gz", decompress=True)
    assert no_network == []


# ---------------------------------------------------------------------------------------------------- zip limits


def test_extract_zip_size_limits(tmp_path: Path) -> None:
    big = make_zip(tmp_path / "big.zip", {"d/a.dat": b"a" * 1000, "d/b.dat": b"b" * 10})
    with pytest.raises(DownloadError, match=r"member 'd/a\.dat' unpacks to more than 500 bytes \(1,000\)"):
        extract_zip(big, tmp_path / "data" / "one", max_member_bytes=500)
    several = make_zip(tmp_path / "several.zip", {f"d/{i}.dat": b"x" * 400 for i in range(3)})
    with pytest.raises(DownloadError, match=r"the archive unpacks to more than 1,000 bytes \(1,200\)"):
        extract_zip(several, tmp_path / "data" / "all", max_total_bytes=1000)
    assert not (tmp_path / "data" / "one").exists() and not (tmp_path / "data" / "all").exists()
    assert no_temp_files(tmp_path / "data")
    out = extract_zip(several, tmp_path / "data" / "fits", max_total_bytes=1200, max_member_bytes=400)
    assert sorted(p.name for p in out.iterdir()) == ["0.dat", "1.dat", "2.dat"]


def test_extract_zip_counts_the_bytes_actually_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # should an archive's declared sizes lie, the bytes written are counted too
    monkeypatch.setattr(dl, "_check_members", lambda *a, **k: None)
    archive = make_zip(tmp_path / "a.zip", {"d/a.dat": b"a" * 3000})
    with pytest.raises(DownloadError, match="unpacks to more than 2,000 bytes"):
        extract_zip(archive, tmp_path / "data" / "a", max_member_bytes=2000)
    with pytest.raises(DownloadError, match="the archive unpacks to more than 2,500 bytes"):
        extract_zip(archive, tmp_path / "data" / "a", max_total_bytes=2500)
    assert not (tmp_path / "data" / "a").exists() and no_temp_files(tmp_path / "data")
