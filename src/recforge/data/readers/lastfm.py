"""HetRec 2011 Last.fm (``hetrec2011-lastfm-2k``): play counts, artists and tag assignments.

Ids are integers (int64; anything else is refused with file, line and field), play counts finite
numbers; ``tags.dat`` is Latin-1 (its official encoding), the other files UTF-8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.readers._base import (
    DataFormatError,
    RawDataset,
    attach_tags,
    check_header,
    need,
    parse_int,
    read_arrow_csv,
    text_lines,
    to_pandas,
)

__all__ = ["read_lastfm_hetrec"]


def read_lastfm_hetrec(directory: str | Path, *, name: str = "lastfm-2k") -> RawDataset:
    """HetRec 2011 Last.fm (folder ``hetrec2011-lastfm-2k``): ``user_artists.dat`` play counts as ``weight``.

    ``item_info`` (index: artist id) has ``name``, ``url`` (``artists.dat``) and ``tags``: tag names
    (``tags.dat``) assigned to the artist in ``user_taggedartists.dat``, most used first. It covers the
    artists of ``artists.dat`` and of the interactions.
    """
    directory = Path(directory)
    path = need(directory / "user_artists.dat", "Last.fm HetRec 2011", "read_lastfm_hetrec")
    check_header(path, "\t", ("userID", "artistID", "weight"), quoted=False)
    interactions = to_pandas(
        read_arrow_csv(path, (("user", "int"), ("item", "int"), ("weight", "float")), sep="\t", header=True)
    )

    item_info = None
    artists = directory / "artists.dat"
    if artists.is_file():
        ids, names, urls = [], [], []
        for line_no, line in text_lines(artists, "utf-8"):
            if line_no == 1 or not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise DataFormatError(artists, "expected 'id name url pictureURL' (tab-separated)", line=line_no)
            ids.append(parse_int(artists, line_no, "id", parts[0]))
            names.append(parts[1])
            urls.append(parts[2])
        index = pd.Index(np.asarray(ids, dtype=np.int64), name="item")
        item_info = pd.DataFrame(
            {
                "name": pd.Series(names, index=index, dtype="str"),
                "url": pd.Series(urls, index=index, dtype="str"),
            },
            index=index,
        )
        missing = np.setdiff1d(interactions["item"].unique(), item_info.index.to_numpy())
        if len(missing):
            item_info = item_info.reindex(item_info.index.append(pd.Index(missing, name="item")))

    tagged = directory / "user_taggedartists.dat"
    tag_names = directory / "tags.dat"
    if tagged.is_file() and tag_names.is_file():
        names_by_id: dict[int, str] = {}
        for line_no, line in text_lines(tag_names, "latin-1"):
            if line_no == 1 or not line.strip():
                continue
            tag_id, sep, value = line.partition("\t")
            if not sep:
                raise DataFormatError(tag_names, "expected 'tagID<TAB>tagValue'", line=line_no)
            names_by_id[parse_int(tag_names, line_no, "tagID", tag_id)] = value
        check_header(tagged, "\t", ("userID", "artistID", "tagID"), quoted=False)
        fields = (("user", "int"), ("item", "int"), ("tag_id", "int"), ("day", "int"), ("month", "int"))
        table = read_arrow_csv(tagged, (*fields, ("year", "int")), sep="\t", header=True)
        frame = table.select(["item", "tag_id"]).to_pandas()
        counts = frame.groupby(["item", "tag_id"], sort=False).size().rename("n").reset_index()
        counts["tag"] = counts["tag_id"].map(names_by_id)
        counts = counts[counts["tag"].notna()]
        counts = counts.sort_values(["item", "n", "tag_id"], ascending=[True, False, True], kind="stable")
        tags = counts.groupby("item", sort=True)["tag"].agg(list)
        if item_info is not None:
            tags = tags[tags.index.isin(item_info.index)]
        item_info = attach_tags(item_info, tags)
    return RawDataset(name, interactions, item_info)
