"""Several datasets as one, as the official ``data/dataset.py`` ``MultipleDatasets`` mixes them.

``balanced=False`` ("concat"): the datasets one after the other. ``balanced=True`` (the official
"balance" strategy with ``total_data_len='auto'``): ``total_len`` samples (default: the sum of
the lengths), an equal share per dataset; a dataset shorter than its share is repeated, and the
remainder of a share is drawn at random from it; indices past the last full share pick a random
dataset, as officially (Python's ``random``).
"""
from __future__ import annotations

import random
from typing import Optional, Sequence

import numpy as np
from torch.utils.data import Dataset


class MultipleDatasets(Dataset):
    def __init__(self, dbs: Sequence[Dataset], balanced: bool = True, total_len: Optional[int] = None):
        if not dbs:
            raise ValueError("no datasets to mix")
        self.dbs = list(dbs)
        self.lens = [len(db) for db in self.dbs]
        self.cumsum = np.cumsum(self.lens)
        self.balanced = balanced
        self.total_len = int(self.cumsum[-1]) if total_len is None else int(total_len)
        self.per_db_len = self.total_len // len(self.dbs)

    def __len__(self) -> int:
        return self.total_len if self.balanced else int(self.cumsum[-1])

    def locate(self, index: int):
        """(dataset index, sample index) of a mixed index."""
        if not self.balanced:
            db = int(np.searchsorted(self.cumsum, index, side="right"))
            return db, index - (int(self.cumsum[db - 1]) if db else 0)
        db, i = index // self.per_db_len, index % self.per_db_len
        if db > len(self.dbs) - 1:
            db = random.randint(0, len(self.dbs) - 1)
        n = self.lens[db]
        if n < self.per_db_len and i >= n * (self.per_db_len // n):
            i = random.randint(0, n - 1)
        else:
            i = i % n
        return db, i

    def __getitem__(self, index: int):
        db, i = self.locate(index)
        return self.dbs[db][i]
