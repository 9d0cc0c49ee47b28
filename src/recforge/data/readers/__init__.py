"""Readers for the official file formats of public recommender-system datasets.

Every reader returns a :class:`RawDataset`: an ``interactions`` frame with raw ids plus optional
``item_info`` / ``user_info`` frames indexed by raw id. Column conventions of ``interactions``:

``user``, ``item``
    raw ids: ``int64`` where the official format defines integer ids (MovieLens, Last.fm; the Goodreads
    CSV when a column holds only canonical integers), else ``str`` exactly as written: Amazon, Goodreads
    JSON, MSD and every file read by :func:`read_table` (``0012`` and ``12`` are two ids, ``0001234567``
    keeps its zeros) unless the user asks for integers (``ids="int"``). Never floats, never bytes.
``rating`` (float32, optional)
    an explicit rating as given by the source (1-5, 0.5-5.0, Goodreads 0 = "no rating"); always finite.
``weight`` (float32, optional)
    an implicit strength such as a play count; always finite.
``timestamp`` (int64 unix seconds, optional)
Any other column is source specific (e.g. ``review_text``/``summary`` for Amazon, ``is_read`` for Goodreads).

``item_info`` is indexed by the raw item id (index name ``"item"``) and may hold ``title``, ``genres``
(list of str), ``year`` (nullable Int64), ``tags`` (list of str, most used first), ``name``...;
``user_info`` is indexed by the raw user id (index name ``"user"``).

Large delimited files are parsed with the multi-threaded pyarrow CSV reader (a 20M-row
``ratings.csv`` reads in a few seconds); when it rejects a file, the file is re-scanned line by line to
raise a :class:`DataFormatError` naming the file, line and field. Only the interactions file of a
dataset is required; side files (titles, users, tags) are read when present.

Bad input never ends in a raw pandas/pyarrow/zlib/UnicodeDecodeError traceback: a corrupt, truncated or
mislabelled (``.gz``) file, binary data, ``inf``/``NaN``/out-of-range numbers and malformed lines raise
:class:`DataFormatError` naming the file (and line and field where there is one); an unreadable file
raises :class:`PermissionError` naming it. Text is UTF-8; a file that is not valid UTF-8 is decoded as
Latin-1 (ISO-8859-1, which keeps every byte; formats whose official files are Latin-1 say so, others
warn), except JSON, which must be UTF-8. One module per source family: :mod:`.movielens`,
:mod:`.lastfm`, :mod:`.json_lines` (Amazon, Goodreads), :mod:`.tables` (generic tables, MSD triplets),
:mod:`.msd` (the MSD taste profile folder with its Last.fm song tags);
the shared checks are in :mod:`._base`.
"""

from __future__ import annotations

from recforge.data.readers._base import DataFormatError, RawDataset
from recforge.data.readers.json_lines import read_amazon_reviews, read_goodreads
from recforge.data.readers.lastfm import read_lastfm_hetrec
from recforge.data.readers.movielens import (
    ML100K_FOLDS,
    read_movielens_1m,
    read_movielens_10m,
    read_movielens_100k,
    read_movielens_100k_fold,
    read_movielens_csv,
)
from recforge.data.readers.msd import read_lastfm_msd_tags, read_msd_taste_profile
from recforge.data.readers.tables import read_playcount_triplets, read_table

__all__ = [
    "ML100K_FOLDS",
    "DataFormatError",
    "RawDataset",
    "read_amazon_reviews",
    "read_goodreads",
    "read_lastfm_hetrec",
    "read_lastfm_msd_tags",
    "read_movielens_1m",
    "read_movielens_10m",
    "read_movielens_100k",
    "read_movielens_100k_fold",
    "read_movielens_csv",
    "read_msd_taste_profile",
    "read_playcount_triplets",
    "read_table",
]
