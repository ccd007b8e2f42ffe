"""The runs table's columns, k9s-style: sized from the content and the width, nothing essential lost."""
from __future__ import annotations

import pytest

from dlaas_tui.widgets.run_table import fit_middle, natural, plan_columns, unique_prefix_length

# What 40 queued sweep trials and a few finished runs make the columns want (header included).
SWEEP = {"id": 17, "name": 16, "experiment": 13, "state": 11, "queue": 8, "gpus": 6, "assigned": 10,
         "age": 6, "cost": 7, "metric": 11, "params": 17}


def keys(cols):
    return [c.key for c, _ in cols]


def widths(cols):
    return {c.key: w for c, w in cols}


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_the_columns_always_fit(width):
    cols = plan_columns(width, SWEEP, id_prefix=12)
    assert sum(w for _, w in cols) + len(cols) - 1 <= width
    assert {"name", "state"} <= set(keys(cols))


def test_80_columns_keep_what_a_user_reads():
    cols = plan_columns(80, SWEEP, id_prefix=12)
    shown = widths(cols)
    for key in ("name", "state", "queue", "gpus", "cost", "metric"):
        assert key in shown
    for key in ("name", "state", "queue", "gpus", "cost", "metric"):
        assert shown[key] >= SWEEP[key], key  # readable: not cut
    # The ID gave way first: a unique prefix (and its `…`), not the whole id.
    assert shown.get("id", 13) == 13


def test_a_wide_terminal_shows_everything_whole():
    shown = widths(plan_columns(200, SWEEP, id_prefix=12))
    assert set(shown) == set(SWEEP)
    for key, want in SWEEP.items():
        assert shown[key] >= want, key


def test_empty_columns_collapse_and_give_their_room_to_the_name():
    content = {"id": 17, "name": 36, "state": 9, "gpus": 4, "age": 6, "cost": 6}
    cols = plan_columns(80, content, id_prefix=11)
    assert keys(cols) == ["id", "name", "state", "gpus", "age", "cost"]
    assert widths(cols)["name"] == 36  # whole: the ID is the one cut to a prefix


def test_the_id_is_cut_to_its_unique_prefix_before_the_name_is_cut():
    content = {"id": 17, "name": 30, "state": 11, "queue": 8, "gpus": 6, "age": 6, "cost": 7, "metric": 11}
    shown = widths(plan_columns(100, content, id_prefix=11))
    assert shown["name"] == 30
    assert shown["id"] == 12  # `training-ab…`


def test_a_long_name_keeps_its_tail():
    names = [f"pytorch-sweep-{i}" for i in range(1, 11)]
    cut = [fit_middle(n, 12) for n in names]
    assert len(set(cut)) == 10
    assert all(len(c) == 12 for c in cut)
    assert fit_middle("pytorch-sweep-10", 12).rstrip().endswith("p-10")
    assert fit_middle("short", 8) == "short   "


def test_unique_prefix_skips_the_shared_part():
    assert unique_prefix_length(["training-abc", "training-abd", "training-xyz"]) == len("training-ab") + 1
    assert unique_prefix_length(["training-a1", "training-b2"]) == len("training-") + 1
    assert unique_prefix_length(["only"]) == 4


def test_natural_order_of_names():
    names = [f"pytorch-sweep-{i}" for i in (10, 2, 1, 9)]
    assert sorted(names, key=natural) == [f"pytorch-sweep-{i}" for i in (1, 2, 9, 10)]
