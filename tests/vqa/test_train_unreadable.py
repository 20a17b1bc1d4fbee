"""Issue 24: `vqa train` exited 0 when training images were unreadable. Now it stops before
training (exit 2, naming the first path), unless --skip-unreadable, which prints the count."""

from __future__ import annotations

import shutil

from tests.conftest import run_main
from tests.vqa.conftest import tiny_vqa_config, write_yaml


def test_vqa_train_refuses_unreadable_images_unless_told_to_skip(
    capsys, tmp_path, vqa_rad_dir, hub_tokenizer_dir
):
    (tmp_path / "imgs").mkdir()
    rows = ["image,question,answer,answer_type"]
    for p in sorted((vqa_rad_dir / "images").iterdir())[:3]:
        shutil.copy(p, tmp_path / "imgs" / p.name)
        rows += [
            f"imgs/{p.name},Is there a fracture?,no,CLOSED",
            f"imgs/{p.name},Organ?,chest,OPEN",
        ]
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    rows += ["imgs/broken.jpg,Is it normal?,yes,CLOSED"]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    cfg = tiny_vqa_config(tmp_path / "run", tmp_path, hub_tokenizer_dir,
                          data={"dataset": "files", "train": str(tmp_path / "train.csv")},
                          train={"steps": 1, "global_batch_size": 4})  # fmt: skip
    config = write_yaml(tmp_path / "vqa.yaml", cfg)

    code, out, err = run_main(capsys, "vqa", "train", config)
    assert code == 2 and "1 training image(s) could not be read" in err and "broken.jpg" in err
    assert "--skip-unreadable" in err and not (tmp_path / "run" / "final").exists()

    code, out, err = run_main(capsys, "vqa", "train", config, "--skip-unreadable")
    assert code == 0, err[-2000:]
    assert "skipped 1 training question(s) of 1 unreadable image(s)" in out
