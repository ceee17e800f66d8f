"""Readers of each dataset format on small generated files."""

import pandas as pd
import pytest

from data.importers.readers import Columns, DatasetError, read_dataset, read_table


def _write(path, text: str):
    path.write_text(text)
    return path


def test_recbole_atomic_with_item_file(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    _write(
        folder / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t5\t100\n1\t11\t2\t90\n2\t10\t4\t95\n",
    )
    _write(
        folder / "toy.item",
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        "10\tAlien\tHorror Sci-Fi\n11\tHeat\tCrime\n12\tNever Seen\tDrama\n",
    )
    d = read_dataset("recbole", folder)
    assert d.name == "toy" and d.strength_kind == "rating" and not d.pre_split
    assert d.interactions[["user_id", "item_id", "strength", "timestamp"]].values.tolist() == [
        ["1", "10", 5.0, 100.0],
        ["1", "11", 2.0, 90.0],
        ["2", "10", 4.0, 95.0],
    ]
    items = d.items.set_index("item_id")
    assert items.loc["10", "category"] == "Horror" and items.loc["11", "title"] == "Heat"
    assert "12" in items.index  # catalogue items without interactions are kept


def test_recbole_pre_split_files_are_kept_as_given(tmp_path):
    header = "user_id:token\titem_id:token\n"
    for part, rows in [("train", "a\tx\na\ty\n"), ("valid", "a\tz\n"), ("test", "b\tx\n")]:
        _write(tmp_path / f"s.{part}.inter", header + rows)
    d = read_dataset("recbole", tmp_path / "s.train.inter")
    assert d.pre_split and d.strength_kind == "implicit"
    assert d.interactions["part"].tolist() == ["train", "train", "valid", "test"]
    assert d.interactions["row"].tolist() == [0, 1, 2, 3]
    assert d.interactions["timestamp"].isna().all()


def test_lastfm_hetrec_layout_with_names_and_tags(tmp_path):
    _write(
        tmp_path / "user_artists.dat",
        "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t1\n3\t51\t7\n",
    )
    _write(
        tmp_path / "artists.dat",
        "id\tname\turl\tpictureURL\n51\tDuran Duran\tu\tp\n52\tMorcheeba\tu\tp\n",
    )
    _write(tmp_path / "tags.dat", "tagID\ttagValue\n1\tpop\n2\ttrip-hop\n")
    _write(
        tmp_path / "user_taggedartists.dat",
        "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t51\t1\t1\t1\t2009\n3\t51\t1\t1\t1\t2009\n"
        "3\t51\t2\t1\t1\t2009\n2\t52\t2\t1\t1\t2009\n",
    )
    d = read_dataset("lastfm", tmp_path)
    assert d.strength_kind == "count" and d.content_type == "AUDIO"
    assert d.interactions["strength"].tolist() == [13883.0, 1.0, 7.0]
    items = d.items.set_index("item_id")
    assert items.loc["51", "title"] == "Duran Duran" and items.loc["51", "creator"] == "51"
    assert items.loc["51", "category"] == "pop" and items.loc["52", "category"] == "trip-hop"


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet"])
def test_table_with_named_columns(tmp_path, suffix):
    frame = pd.DataFrame({"u": ["a", "b"], "i": ["x", "y"], "plays": [3, 1], "t": [5, 6]})
    path = tmp_path / f"log.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="," if suffix == "csv" else "\t", index=False)
    d = read_table(path, Columns("u", "i", "plays", "t"), strength_kind="count")
    assert d.interactions[["user_id", "item_id", "strength", "timestamp"]].values.tolist() == [
        ["a", "x", 3.0, 5.0],
        ["b", "y", 1.0, 6.0],
    ]
    assert d.strength_kind == "count"


def test_table_pre_split_and_bad_input(tmp_path):
    for name in ("tr", "va", "te"):
        pd.DataFrame({"user_id": ["a"], "item_id": [name]}).to_csv(
            tmp_path / f"{name}.csv", index=False
        )
    d = read_table(tmp_path / "tr.csv", valid=tmp_path / "va.csv", test=tmp_path / "te.csv")
    assert d.interactions["part"].tolist() == ["train", "valid", "test"]
    with pytest.raises(DatasetError, match="both valid and test"):
        read_table(tmp_path / "tr.csv", valid=tmp_path / "va.csv")
    with pytest.raises(DatasetError, match="column 'user'"):
        read_table(tmp_path / "tr.csv", Columns(user="user"))
    with pytest.raises(DatasetError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "r": ["high"]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    with pytest.raises(DatasetError, match="non-numeric"):
        read_table(tmp_path / "bad.csv", Columns(strength="r"), strength_kind="rating")
    with pytest.raises(DatasetError, match="unknown format"):
        read_dataset("netflix", tmp_path)
