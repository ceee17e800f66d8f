"""Merging ``feedray evaluate`` reports into the EVALUATION.md table and plot."""

import json

import pytest

from train.eval_report import main, markdown_table, merge_reports

PROTOCOL = {"split": "random", "ratios": [0.8, 0.1, 0.1], "seed": 0, "sizes": {}}


def _report(models):
    return {"dataset": "toy", "protocol": PROTOCOL | {"users": 3, "items": 4}, "models": models}


def _entry(recall, **extra):
    test = {"recall@10": recall, "ndcg@10": recall / 2, "recall@20": recall, "eval_s": 0.5}
    return {"test": test, "train_s": 1.0} | extra


def test_merge_and_table(tmp_path, capsys):
    a = _report({"popularity": _entry(0.1), "ease": _entry(0.3, **{"lambda": 50.0})})
    b = _report({"pipeline": _entry(0.4, best_epoch=2, epochs_run=4)})
    merged = merge_reports([a, b])
    assert list(merged["models"]) == ["popularity", "ease", "pipeline"]
    table = markdown_table(merged).splitlines()
    assert table[2].startswith("| popularity | 0.1000 | 0.0500 | - |")
    assert "λ=50.0" in table[3] and "epoch 2/4" in table[4]
    with pytest.raises(ValueError, match="differs"):
        merge_reports([a, _report({}) | {"dataset": "other"}])
    paths = []
    for i, r in enumerate((a, b)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    png = tmp_path / "r.png"
    main([str(p) for p in paths] + ["--plot", str(png)])
    assert "| pipeline | 0.4000" in capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"
