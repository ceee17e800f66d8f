"""Merging ``feedray evaluate`` reports into the EVALUATION.md table and plot."""

import json

import pytest

from train.eval_report import main, markdown_table, merge_reports, merge_seeds

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


def test_merge_seeds_gives_mean_and_sample_std(tmp_path, capsys):
    def seeded(seed, models):
        r = _report(models)
        return r | {"protocol": r["protocol"] | {"seed": seed}}

    runs = [
        seeded(0, {"popularity": _entry(0.1)}),
        seeded(0, {"pipeline": _entry(0.4, best_epoch=1, epochs_run=4, blend=0.5)}),
        seeded(1, {"popularity": _entry(0.3)}),
        seeded(1, {"pipeline": _entry(0.2, best_epoch=2, epochs_run=4, blend=0.25)}),
    ]
    merged = merge_seeds(runs)
    assert merged["protocol"]["seed"] == [0, 1]
    pop, pipe = merged["models"]["popularity"], merged["models"]["pipeline"]
    assert pop["test"]["recall@10"] == pytest.approx(0.2)
    assert pop["test_std"]["recall@10"] == pytest.approx(0.1414, abs=1e-4)  # ddof 1
    assert pipe["seeds"] == 2 and pipe["selected"] == "epoch 1/4 w=0.5, epoch 2/4 w=0.25"
    table = markdown_table(merged)
    assert "| popularity | 0.2000 ± 0.1414 | 0.1000 ± 0.0707 | - |" in table
    assert merge_seeds(runs[:2])["protocol"]["seed"] == 0  # one seed: a plain merge
    with pytest.raises(ValueError, match="differs"):
        merge_seeds([runs[0], runs[2] | {"dataset": "other"}])
    png = tmp_path / "r.png"
    paths = []
    for i, r in enumerate(runs):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    main([str(p) for p in paths] + ["--plot", str(png)])
    assert "0.3000 ± 0.1414" in capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"
