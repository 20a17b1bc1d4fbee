"""Training batches as a pure function of (seed, step): what makes resume exact.

Global batch ``s`` is ``perm_e[b*G:(b+1)*G]`` with ``e, b = divmod(s, batches_per_epoch)`` and
``perm_e`` a seeded permutation of the training questions for epoch ``e``; rank ``r`` of ``W``
takes every W-th question of it. With cached image tokens a batch carries token rows; otherwise
images are decoded (through :func:`biomedclip.imaging.load_image`) and augmented with a per-sample
seed, in DataLoader workers when ``workers > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from biomedclip.imaging import load_image
from biomedclip.train.sources import sample_seed, seeded_transform
from biomedclip.vqa.data import QAItem


class StepBatches(Dataset):
    """``dataset[step]`` (0-based) -> this rank's batch of that step."""

    def __init__(
        self,
        items: Sequence[QAItem],
        targets: Sequence[int],
        question_ids: list[list[int]],
        pad_id: int,
        global_batch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        token_rows: dict[str, int] | None = None,
        transform: Callable | None = None,
    ):
        self.items, self.targets, self.qids, self.pad_id = items, targets, question_ids, pad_id
        self.global_batch, self.seed, self.rank, self.world = global_batch, seed, rank, world
        self.token_rows, self.transform = token_rows, transform
        self.per_epoch = math.ceil(len(items) / global_batch)

    def indices(self, step: int) -> np.ndarray:
        epoch, b = divmod(step, self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))
        return perm[b * self.global_batch : (b + 1) * self.global_batch][self.rank :: self.world]

    def __len__(self) -> int:  # not used for sampling: steps come from the sampler
        return 2**62

    def __getitem__(self, step: int) -> dict:
        idx = self.indices(step)
        ids = [self.qids[i] for i in idx]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "targets": torch.tensor([self.targets[i] for i in idx], dtype=torch.long),
        }
        if self.token_rows is not None:
            batch["token_rows"] = torch.tensor([self.token_rows[self.items[i].image] for i in idx])
        else:
            batch["pixels"] = torch.stack(
                [
                    seeded_transform(
                        self.transform,
                        load_image(self.items[i].image, mode=None),
                        sample_seed(self.seed, step, int(i)),
                    )
                    for i in idx
                ]
            )
        return batch


def step_loader(batches: StepBatches, start: int, total: int, workers: int) -> DataLoader:
    """Batches of steps ``start .. total - 1`` in order."""
    return DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, total),
        num_workers=workers,
        persistent_workers=False,
    )
