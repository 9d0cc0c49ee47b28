"""Item tags as classes: top tags, play-weighted user top tags, a stable class2idx."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data import tags as T

INFO = pd.DataFrame({"tags": [["rock", "indie"], ["jazz"], [], ["rock"], ["pop", "rock"], None]})


def test_item_top_tags_and_tag_masks():
    top = T.item_top_tags(INFO, 6)
    assert top.tolist() == ["rock", "jazz", None, "rock", "pop", None]
    assert T.items_with_tag(INFO, 6, "rock").tolist() == [True, False, False, True, False, False]
    assert T.items_with_tag(INFO, 6, "rock", depth=2).tolist() == [True, False, False, True, True, False]
    with pytest.raises(ValueError, match="'genres'"):
        T.item_top_tags(INFO, 6, column="genres")
    with pytest.raises(ValueError, match="rows"):
        T.item_top_tags(INFO, 5)


def test_class2idx_is_stable_and_keeps_the_most_frequent():
    labels = ["rock", "jazz", None, "rock", "pop", "jazz", "rock"]
    assert T.class2idx(labels) == {"jazz": 0, "pop": 1, "rock": 2}
    assert T.class2idx(labels[::-1]) == T.class2idx(labels)  # the order of the rows does not matter
    assert T.class2idx(labels, top=2) == {"jazz": 0, "rock": 1}
    assert T.class2idx(labels, min_count=2) == {"jazz": 0, "rock": 1}
    assert T.class2idx([None]) == {}


def test_user_top_tag_is_play_weighted():
    top = T.item_top_tags(INFO, 6)
    classes = T.class2idx(top)
    plays = sp.csr_array(
        np.array(
            [
                [1, 50, 0, 1, 0, 0],  # jazz: 50 plays beat two rock artists played once
                [1, 1, 0, 1, 0, 0],  # rock: two artists
                [0, 0, 9, 0, 0, 9],  # only untagged artists
                [0, 3, 0, 0, 3, 0],  # tie: the smaller class index (jazz < pop)
            ],
            dtype=np.float32,
        )
    )
    assert T.user_top_tags(plays, top, classes).tolist() == ["jazz", "rock", None, "jazz"]
    weights = T.user_class_weights(plays, top, classes)
    assert weights[0].tolist() == [50.0, 0.0, 2.0]
    binary = (plays > 0).astype(np.float32)
    assert T.user_top_tags(binary, top, classes)[0] == "rock"  # counting artists instead of plays
