"""P identities x K images per batch, for batch-hard triplet losses, without dropping any image.

The usual ``RandomIdentitySampler`` (open-reid, BoT, torchreid, fast-reid) cuts each identity's
images into chunks of K and stops an epoch when fewer than P identities have chunks left; the last
short chunk of an identity is thrown away, and so are whole chunks of the identities still left at
the end. Over an epoch of Market-1501 that silently skips hundreds of images, always more often those
of identities with many images. :class:`PKBatchSampler` keeps every image: short chunks are filled
up, and the final batches are completed with extra chunks, so each image is seen at least once per
epoch while every batch still has exactly P distinct identities x K images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from reidlib.utils.checks import check_int


class PKBatchSampler:
    """Batches of dataset indices: P distinct identities x K images each; nothing dropped.

    Use as ``DataLoader(dataset, batch_sampler=PKBatchSampler(pids, P, K, seed=...))`` and call
    :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.

    Epoch plan, a pure function of (``seed``, epoch) and therefore identical on every rank:

    1. Each identity's images are shuffled and cut into chunks of K. A last chunk shorter than K
       (or the only chunk of an identity with fewer than K images) is filled up with random other
       images of the same identity: images not yet in that chunk while there are enough, so a chunk
       repeats an image only when its identity has fewer than K images.
    2. Batches are drawn one after the other: P distinct identities that still have chunks, chosen at
       random with probability proportional to their chunks left (this spreads the identities with
       many images over the epoch instead of leaving them all to its end), give one chunk each. An
       identity whose chunks left equal the batches left is always taken, which makes the number of
       batches the smallest possible, ``max(ceil(C / P), c_max)`` for C chunks in all and at most
       c_max of one identity. When fewer than P identities have chunks left, the batch is completed
       with fresh chunks of random other identities (distinct within the batch).
    3. DDP: batch i goes to rank ``i % world_size``. When the count is not a multiple of
       ``world_size``, batches of P random identities are appended, so all ranks get the same number
       of full batches; the ranks' shares are disjoint and together hold every image of the epoch.

    Every batch lists its identities' K indices one identity after the other. Resuming restores
    ``seed`` and the epoch (:meth:`state_dict`); resuming in the middle of an epoch is not supported.
    """

    def __init__(
        self,
        pids: Sequence[int],
        num_identities: int,
        num_instances: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_identities = check_int("num_identities", num_identities, 2, " (a triplet needs 2 ids)")
        self.num_instances = check_int("num_instances", num_instances, 1)
        self.seed = check_int("seed", seed, 0)
        self.world_size = check_int("world_size", world_size, 1)
        self.rank = check_int("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}")
        pids = [check_int("pids[...]", p, -(2**63)) for p in pids]
        if not pids:
            raise ValueError("pids is empty: the sampler needs at least num_identities identities")
        by_pid: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            by_pid.setdefault(pid, []).append(index)
        if self.num_identities > len(by_pid):
            raise ValueError(
                f"num_identities={self.num_identities} is more than the {len(by_pid)} identities in "
                "the data; lower num_identities (P) or use a larger training split"
            )
        largest = max(len(v) for v in by_pid.values())
        if self.num_instances > largest:
            raise ValueError(
                f"num_instances={self.num_instances} (K images per identity) is more than the {largest} "
                f"images of the data's largest identity: every chunk would be the same images repeated; "
                f"use K <= {largest} (data.num_instances in a recipe)"
            )
        # One array of dataset indices per identity, identities in increasing pid order.
        self._indices = [np.asarray(by_pid[pid], dtype=np.int64) for pid in sorted(by_pid)]
        self.epoch = 0

    # ------------------------------------------------------------------ public API
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan :meth:`__iter__` yields (call before every epoch)."""
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same for every epoch and every rank)."""
        return math.ceil(self._num_batches() / self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._plan(self.epoch)
        yield from batches[self.rank :: self.world_size]

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        missing = {"seed", "epoch"} - set(state)
        if missing:
            raise ValueError(f"PKBatchSampler state is missing {sorted(missing)}; got keys {sorted(state)}")
        self.seed = check_int("seed", state["seed"], 0)
        self.set_epoch(state["epoch"])

    # ------------------------------------------------------------------ the plan
    def _chunks_per_identity(self) -> np.ndarray:
        k = self.num_instances
        return np.array([-(-len(idx) // k) for idx in self._indices], dtype=np.int64)

    def _num_batches(self) -> int:
        """Batches of the whole epoch before DDP padding: max(ceil(C / P), c_max)."""
        chunks = self._chunks_per_identity()
        return max(math.ceil(int(chunks.sum()) / self.num_identities), int(chunks.max()))

    def _fill(self, rng: np.random.Generator, idx: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        """``chunk`` completed to K with other images of its identity (repeats only when too few)."""
        need = self.num_instances - len(chunk)
        if need == 0:
            return chunk
        others = np.setdiff1d(idx, chunk)
        if len(others) >= need:
            extra = rng.choice(others, need, replace=False)
        else:
            extra = rng.choice(idx, need, replace=True)
        return np.concatenate([chunk, extra])

    def _fresh_chunk(self, rng: np.random.Generator, identity: int) -> np.ndarray:
        """K random images of one identity (distinct when it has at least K)."""
        idx = self._indices[identity]
        return self._fill(rng, idx, rng.permutation(idx)[: self.num_instances])

    def _extra_identities(self, rng: np.random.Generator, taken: np.ndarray) -> np.ndarray:
        others = np.setdiff1d(np.arange(len(self._indices)), taken)
        return rng.choice(others, self.num_identities - len(taken), replace=False)

    def _plan(self, epoch: int) -> list[list[int]]:
        """All batches of one epoch, for all ranks, padded to a multiple of world_size."""
        rng = np.random.default_rng([self.seed, epoch])
        k, p = self.num_instances, self.num_identities
        chunks: list[list[np.ndarray]] = []
        for idx in self._indices:
            perm = rng.permutation(idx)
            pieces = [perm[s : s + k] for s in range(0, len(perm), k)]
            pieces[-1] = self._fill(rng, idx, pieces[-1])
            chunks.append(pieces)

        left = np.array([len(c) for c in chunks], dtype=np.int64)  # chunks not yet used, per identity
        num_batches = self._num_batches()
        batches: list[list[int]] = []
        for batches_left in range(num_batches, 0, -1):
            # Invariants: left <= batches_left and left.sum() <= P * batches_left, so the forced
            # identities (left == batches_left) never exceed P and the plan ends with left == 0.
            active = np.flatnonzero(left)
            forced = active[left[active] == batches_left]
            optional = active[left[active] < batches_left]
            n_optional = min(p, len(active)) - len(forced)
            if n_optional > 0:
                weights = left[optional] / left[optional].sum()
                chosen = np.concatenate([forced, rng.choice(optional, n_optional, replace=False, p=weights)])
            else:
                chosen = forced
            parts = {int(i): chunks[i][len(chunks[i]) - left[i]] for i in chosen}
            left[chosen] -= 1
            if len(chosen) < p:
                parts.update({int(i): self._fresh_chunk(rng, i) for i in self._extra_identities(rng, chosen)})
            order = rng.permutation(sorted(parts))
            batches.append(np.concatenate([parts[int(i)] for i in order]).tolist())  # (P * K,)
        assert not left.any(), "PKBatchSampler plan left chunks unused"

        while len(batches) % self.world_size:
            ids = self._extra_identities(rng, np.empty(0, dtype=np.int64))
            batches.append(np.concatenate([self._fresh_chunk(rng, i) for i in ids]).tolist())
        return batches
