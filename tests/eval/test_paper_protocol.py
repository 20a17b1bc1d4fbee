"""Issue 19: the paper's prompts (Supp. Table 10), splits that do not leak, the published probe
protocol, multi-label zero-shot and the peer metrics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from biomedclip.cli.main import main
from biomedclip.errors import InputError
from biomedclip.eval.datasets import image_folder, load_dataset
from tests.conftest import shared_path

from .fixtures import write_class_folders

SUPP_TABLE_10_LUNG = ["lung adenocarcinomas", "normal lung tissue", "lung squamous cell carcinomas"]
SUPP_TABLE_10_LUNG_TEMPLATES = ["this is an image of {}", "{} presented in image"]


def test_protocol_constants_are_supp_table_10():
    """The constants in src equal the protocol file's facts (classes mapped to adapter order)."""
    from biomedclip.eval.protocol import PAPER_DATASETS

    facts = json.loads(shared_path("paper", "biomedclip_zero_shot_protocol.json").read_text())
    for name, f in facts["zero_shot"].items():
        spec = PAPER_DATASETS[name]
        assert list(spec.paper_order) == f["classes"] and sorted(spec.classnames) == sorted(
            f["classes"]
        )
        assert list(spec.templates) == f["templates"]
        assert spec.paper == f["paper_224px"] and spec.paper_384 == f["paper_384px"]
        assert spec.metric == {"accuracy": "acc1", "auroc": "auroc"}[f["metric"]]
    lung = PAPER_DATASETS["lc25000_lung"]
    assert lung.prompt_names(["lung_scc", "lung_aca"]) == [
        "lung squamous cell carcinomas",
        "lung adenocarcinomas",
    ]


@pytest.mark.slow
def test_zeroshot_cli_uses_paper_prompts_and_equals_open_clip(hub_dir, tmp_path, capsys):
    import torch
    import torch.nn.functional as F
    from benchmarks._reference import build_reference, ours_from_reference

    data = shared_path(".")
    ref, ref_pre, ref_tok = build_reference(tmp_path / "ref", seed=5, hub_dir=hub_dir, depth=2)
    with torch.no_grad():
        ref.logit_scale.fill_(np.log(100.0))
    ours_from_reference(ref, tmp_path, depth=2)
    out = tmp_path / "report"
    args = ["eval", "zeroshot", "lc25000_lung", "--data-root", str(data), "--model",
            str(tmp_path / "ours"), "--no-cache", "--bootstrap", "0", "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    [rec] = json.loads((out / "results.json").read_text())
    assert rec["classes"] == SUPP_TABLE_10_LUNG
    assert rec["settings"]["templates"] == SUPP_TABLE_10_LUNG_TEMPLATES
    assert rec["settings"]["dataset_classes"] == ["lung_aca", "lung_n", "lung_scc"]
    rows = (out / "predictions" / "lc25000_lung-zeroshot_classification.csv").read_text()
    rows = [r.split(",") for r in rows.strip().splitlines()[1:]]
    assert len(rows) == rec["n_samples"] == 120

    test = load_dataset("lc25000_lung", data, "test")
    assert [r[0] for r in rows] == test.ids
    with torch.inference_mode():
        w = []
        for name in SUPP_TABLE_10_LUNG:
            t = ref.encode_text(ref_tok([tpl.format(name) for tpl in SUPP_TABLE_10_LUNG_TEMPLATES]))
            w.append(F.normalize(F.normalize(t, dim=-1).mean(0), dim=-1))
        w = torch.stack(w)
        img = torch.stack([ref_pre(Image.open(p)) for p in test.paths])
        img = F.normalize(ref.encode_image(img), dim=-1)
        probs = (ref.logit_scale.exp() * img @ w.T).softmax(-1).numpy()
    ours = np.asarray([[float(x) for x in r[3:]] for r in rows])
    np.testing.assert_allclose(ours, probs, atol=1e-4)
    assert [int(r[2]) for r in rows] == probs.argmax(1).tolist()
    md = (out / "report.md").read_text()
    # a hash split is not the paper's: no "ours - paper" difference, the deviation is named
    assert "not comparable (split)" in md and "split: the paper's test split" in md


def test_report_prints_difference_only_when_protocol_matches():
    from biomedclip.eval.report import paper_table
    from biomedclip.eval.results import EvalResult

    def zs(name, names, temps):
        return EvalResult(name, "zeroshot_classification", "m", {"acc1": 0.7, "auroc": 0.8},
                          {"acc1": (0.6, 0.8)}, n=10,
                          settings={"classnames": names, "templates": temps})  # fmt: skip

    pcam = zs("pcam", ["normal lymph node", "lymph node metastasis"],
              ["this is an image of {}", "{} presented in image"])  # fmt: skip
    custom = zs("pcam", ["normal", "tumor"], ["a photo of {}"])
    table = paper_table([pcam, custom])
    lines = [line for line in table.splitlines() if line.startswith("| PCam")]
    assert lines[0].endswith("| -3.41 |")
    assert "not comparable (class names; templates)" in lines[1]
    assert "class names: ['normal', 'tumor'] instead of Supp. Table 10's" in table


def _split_layout(root, val=False):
    for s in ("train", "test") + (("val",) if val else ()):
        write_class_folders(root / s, {"benign": (200, 80, 80), "tumor": (60, 60, 200)}, 16)


def test_folder_splits_share_one_class_list_and_carve_val_from_train(tmp_path):
    _split_layout(tmp_path / "d")
    tr, va, te = (image_folder(tmp_path / "d", s) for s in ("train", "val", "test"))
    assert tr.classes == va.classes == te.classes == ["benign", "tumor"]
    assert len(te) == 32 and all(i.startswith("test/") for i in te.ids)
    assert len(tr) + len(va) == 32 and not set(tr.ids) & set(va.ids)
    assert all(i.startswith("train/") for i in tr.ids + va.ids)
    assert sorted(np.bincount(va.labels).tolist()) == [2, 2]
    assert "no val/ folder" in va.notes[-1]
    # one class present in test only as a subset: indices stay those of the union
    shutil.rmtree(tmp_path / "d" / "test" / "benign")
    te = image_folder(tmp_path / "d", "test")
    assert te.classes == ["benign", "tumor"] and set(te.labels.tolist()) == {1}
    # the seed changes the carved val
    assert image_folder(tmp_path / "d", "val", seed=1).ids != va.ids


def test_carved_val_is_named_in_the_report(tmp_path):
    from biomedclip.eval.datasets.base import LabelledSet
    from biomedclip.eval.features import Features
    from biomedclip.eval.probe import linear_probe
    from biomedclip.eval.report import markdown

    _split_layout(tmp_path / "d")
    rng = np.random.default_rng(0)

    def feats(ds: LabelledSet) -> Features:
        x = rng.normal(size=(len(ds), 8)).astype(np.float32) + ds.labels[:, None]
        return Features(ds, x, np.arange(len(ds)), [])

    tr, va, te = (feats(image_folder(tmp_path / "d", s)) for s in ("train", "val", "test"))
    [r] = linear_probe(tr, va, te, fractions=(1.0,), n_resamples=0)
    md = markdown([r])
    assert "## Splits" in md and "no val/ folder: val is a stratified, seeded" in md


def test_folder_split_given_val_is_honoured_and_test_only_class_is_an_error(tmp_path):
    _split_layout(tmp_path / "d", val=True)
    va = image_folder(tmp_path / "d", "val")
    assert len(va) == 32 and all(i.startswith("val/") for i in va.ids)
    write_class_folders(tmp_path / "d" / "test", {"normal": (90, 90, 90)}, 2)
    with pytest.raises(InputError, match=r"\['normal'\].*not in"):
        image_folder(tmp_path / "d", "test")


def test_near_duplicates_never_straddle_a_split(tmp_path):
    src = shared_path("lc25000_lung")
    root = tmp_path / "lung"
    copies = {}
    for c in ("lung_aca", "lung_n", "lung_scc"):
        (root / c).mkdir(parents=True)
        for p in sorted((src / c).iterdir())[:20]:
            im = Image.open(p).convert("RGB")
            variants = {
                "orig": im,
                "flip": im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                "rot90": im.transpose(Image.Transpose.ROTATE_90),
                "rot270flip": im.transpose(Image.Transpose.ROTATE_270).transpose(
                    Image.Transpose.FLIP_TOP_BOTTOM
                ),
            }
            for tag, v in variants.items():
                v.save(root / c / f"{p.stem}_{tag}.png")
            copies[f"{c}/{p.stem}"] = [f"{c}/{p.stem}_{tag}.png" for tag in variants]
    split_of = {}
    for s in ("train", "val", "test"):
        ds = image_folder(root, s)
        split_of.update({i: s for i in ds.ids})
        assert "groups" in ds.notes[-1]
    assert len(split_of) == 240
    for members in copies.values():
        assert len({split_of[m] for m in members}) == 1, members
    # the same with a seed: still grouped, different assignment
    again = {i: s for s in ("train", "val", "test") for i in image_folder(root, s, seed=3).ids}
    assert again != split_of
    for members in copies.values():
        assert len({again[m] for m in members}) == 1


def test_tcga_til_groups_by_patient(tmp_path):
    from biomedclip.eval.datasets.groups import tcga_patient

    assert tcga_patient("brca/til-positive/TCGA-A2-A0T2-01Z-00-DX1_1234_5678.png") == "TCGA-A2-A0T2"
    rng = np.random.default_rng(0)
    for k in range(10):
        for cls in ("til-negative", "til-positive"):
            for t in range(3):
                d = tmp_path / "tcga_til" / "brca" / cls
                d.mkdir(parents=True, exist_ok=True)
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"TCGA-AA-{k:04d}-01Z_{t}.png")
    seen = {}
    for s in ("train", "val", "test"):
        for i in load_dataset("tcga_til", tmp_path, s).ids:
            seen.setdefault(i.split("/")[-1][:12], set()).add(s)
    assert len(seen) == 10 and all(len(v) == 1 for v in seen.values())


def test_table_group_by_column(tmp_path, tiny_model_dir):
    from biomedclip.eval.datasets import table_dataset

    from .fixtures import write_png

    rows = ["path,label,patient"]
    for i in range(60):
        write_png(tmp_path / f"{i}.png", (i * 4, 50, 50), size=8, seed=i)
        rows.append(f"{i}.png,{'ab'[i % 2]},p{i // 6}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    where = {}
    for s in ("train", "val", "test"):
        ds = table_dataset(tmp_path / "t.csv", s, group_col="patient")
        for i in ds.ids:
            where.setdefault(int(i.split(".")[0]) // 6, set()).add(s)
    assert all(len(v) == 1 for v in where.values())
    with pytest.raises(InputError, match="only for CSV/Parquet"):
        load_dataset("lc25000_lung", tmp_path, "test", group_by="patient")


def test_probe_wide_grid_refined_full_val_headline_metric():
    from biomedclip.eval.datasets.base import LabelledSet
    from biomedclip.eval.features import Features
    from biomedclip.eval.probe import C_GRID, linear_probe

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16))

    def feats(n, split, seed, name="tcga_til"):
        r = np.random.default_rng(seed)
        y = np.arange(n) % 2
        x = centres[y] + r.normal(scale=2.0, size=(n, 16))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ds = LabelledSet(name, split, ["til-negative", "til-positive"], [f"{split}{i}" for i in range(n)], y, [f"{i}.png" for i in range(n)])  # fmt: skip
        return Features(ds, x.astype(np.float32), np.arange(n), [])

    tr, va, te = feats(200, "train", 1), feats(80, "val", 2), feats(100, "test", 3)
    assert (
        C_GRID[0] == pytest.approx(1e-6) and C_GRID[-1] == pytest.approx(1e6) and len(C_GRID) == 13
    )
    r1, r100 = linear_probe(tr, va, te, fractions=(0.1, 1.0), n_resamples=0)
    for r in (r1, r100):
        st = r.settings
        assert st["selection_metric"] == "auroc" and st["n_val"] == 80
        assert len(st["C_refined"]) == 6 and len(st["val_scores"]) == 19
        best = max(st["val_scores"].values())
        assert st["val_scores"][f"{st['C']:.6g}"] == best
        assert any(abs(np.log10(c / st["C"])) < 1 for c in st["C_refined"])
    assert r1.settings["n_train"] == 20 and not r1.settings["refit_on_train_plus_val"]
    assert r100.settings["refit_on_train_plus_val"]
    assert r100.metrics["auroc"] > 0.7


def test_few_shot_selects_c_by_cross_validation():
    from biomedclip.eval.datasets.base import LabelledSet
    from biomedclip.eval.features import Features
    from biomedclip.eval.fewshot import ONE_SHOT_C, few_shot

    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = np.eye(3)[y] * 2 + rng.normal(size=(90, 3))
    ds = LabelledSet("s", "train", list("abc"), [str(i) for i in range(90)], y, [f"{i}" for i in range(90)])  # fmt: skip
    f = Features(ds, x.astype(np.float32), np.arange(90), [])
    one, four = few_shot(f, f, shots=(1, 4), seeds=(0, 1), n_resamples=0)
    assert one.settings["C"] == [ONE_SHOT_C] * 2 and "fixed" in one.settings["selection"]
    assert "4-fold CV" in four.settings["selection"]


def test_multilabel_zeroshot_scores_each_label_on_its_own(tiny_encoder, tmp_path):
    from biomedclip.eval.datasets.base import LabelledSet
    from biomedclip.eval.features import Features
    from biomedclip.eval.zeroshot_eval import evaluate_zeroshot

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, tiny_encoder.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.integers(0, 2, (40, 3))
    ds = LabelledSet("ml", "test", ["chest", "brain", "bone"], [str(i) for i in range(40)], y, [str(i) for i in range(40)])  # fmt: skip
    r = evaluate_zeroshot(tiny_encoder, Features(ds, x, np.arange(40), []), ds.classes, "paper",
                          n_resamples=50)  # fmt: skip
    w = tiny_encoder.classifier(ds.classes, "paper").numpy()
    np.testing.assert_allclose(r.scores, x @ w.T, atol=1e-5)  # cosine per label, not a softmax
    assert not np.allclose(r.scores.sum(1), 1)
    from sklearn.metrics import average_precision_score, roc_auc_score

    assert r.metrics["map"] == pytest.approx(average_precision_score(y, r.scores, average="macro"))
    assert r.metrics["auroc"] == pytest.approx(roc_auc_score(y, r.scores, average="macro"))
    assert set(r.ci) == {"map", "auroc"} and r.settings["scoring"] == "per-label cosine"


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_peer_metrics_match_scikit_learn_with_intervals(n_classes):
    from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score

    from biomedclip.eval.results import score_predictions

    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 300)
    p = rng.dirichlet(np.ones(n_classes), 300)
    p[np.arange(300), y] += 0.4
    p /= p.sum(1, keepdims=True)
    pred = p.argmax(1)
    m, ci, _ = score_predictions(y, p, 200, 0)
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y, pred))
    assert m["kappa_quadratic"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    ovo = roc_auc_score(y, p, multi_class="ovo") if n_classes > 2 else roc_auc_score(y, p[:, 1])
    assert m["auroc_ovo"] == pytest.approx(ovo)
    for k in ("kappa", "kappa_quadratic", "weighted_f1", "auroc_ovo"):
        lo, hi = ci[k]
        assert lo <= m[k] <= hi and hi - lo < 0.3
