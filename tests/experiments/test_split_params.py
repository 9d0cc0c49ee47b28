"""Split parameters from a config or ``--set``: TOML has no null, so the text ``none`` stands for None."""

from __future__ import annotations

from recforge.data.splits import liang2018
from recforge.experiments.config import load_config
from recforge.experiments.pipeline import _split_call


def test_none_text_is_none_for_split_parameters():
    cfg = load_config(
        None,
        [
            'data.dataset="lastfm-2k"',
            "model.name=ials",
            "split.protocol=liang2018",
            "split.heldout_users=100",
            "split.min_rating=none",
            "split.value_col=weight",
        ],
    )
    fn, params = _split_call(cfg)
    assert fn is liang2018
    assert params == {"heldout_users": 100, "min_rating": None, "value_col": "weight"}
