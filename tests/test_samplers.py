from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from reidlib.data.samplers import PKBatchSampler


def random_pids(seed: int, num_ids: int, k: int) -> list[int]:
    """Shuffled pids with 1, K-1, K, K+1 and random numbers of images per identity."""
    rng = np.random.default_rng(seed)
    counts = [1, max(k - 1, 1), k, k + 1] + list(rng.integers(1, 4 * k, size=num_ids - 4))
    pids = [pid for pid, n in enumerate(counts) for _ in range(n)]
    rng.shuffle(pids)
    return [int(p) + 100 for p in pids]  # not 0-based, to catch pid/position mix-ups


def check_batch(batch: list[int], pids: list[int], p: int, k: int) -> None:
    assert len(batch) == p * k
    assert all(isinstance(i, int) and 0 <= i < len(pids) for i in batch)
    per_pid = Counter(pids[i] for i in batch)
    assert len(per_pid) == p, f"expected {p} distinct pids, got {per_pid}"
    assert set(per_pid.values()) == {k}


CASES = [(seed, num_ids, p, k) for seed in range(3) for num_ids, p, k in [(10, 4, 4), (7, 7, 2), (25, 6, 3)]]


@pytest.mark.parametrize(("seed", "num_ids", "p", "k"), CASES)
def test_batches_are_p_ids_by_k_and_cover_every_image(seed, num_ids, p, k):
    pids = random_pids(seed, num_ids, k)
    sampler = PKBatchSampler(pids, p, k, seed=seed)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            check_batch(batch, pids, p, k)
        seen = {i for batch in batches for i in batch}
        assert seen == set(range(len(pids))), f"images never sampled: {set(range(len(pids))) - seen}"


def test_number_of_batches_is_the_minimum():
    # Each identity with n images needs ceil(n / K) chunks in distinct batches; P chunks per batch.
    pids = random_pids(5, 30, 4)
    counts = Counter(pids)
    chunks = [math.ceil(n / 4) for n in counts.values()]
    expected = max(math.ceil(sum(chunks) / 8), max(chunks))
    assert len(list(PKBatchSampler(pids, 8, 4))) == expected


def test_identity_with_many_images_sets_the_batch_count():
    pids = [0] * 40 + [1, 2, 3]  # identity 0 needs 10 chunks of K = 4
    batches = list(PKBatchSampler(pids, 2, 4))
    assert len(batches) == 10
    for batch in batches:
        check_batch(batch, pids, 2, 4)
    assert set(range(40)) <= {i for b in batches for i in b}


def test_chunks_repeat_images_only_when_the_identity_has_fewer_than_k():
    pids = random_pids(1, 20, 4)
    counts = Counter(pids)
    for batch in PKBatchSampler(pids, 5, 4, seed=3):
        for pid in {pids[i] for i in batch}:
            images = [i for i in batch if pids[i] == pid]
            assert len(set(images)) == min(counts[pid], 4)


def test_same_seed_and_epoch_give_the_same_plan_other_epochs_differ():
    pids = random_pids(0, 15, 4)
    a, b = PKBatchSampler(pids, 4, 4, seed=7), PKBatchSampler(pids, 4, 4, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice does not advance anything
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(PKBatchSampler(pids, 4, 4, seed=8)) != list(PKBatchSampler(pids, 4, 4, seed=7))


def test_state_dict_round_trip_restores_the_epoch_plan():
    pids = random_pids(2, 12, 3)
    a = PKBatchSampler(pids, 4, 3, seed=11)
    a.set_epoch(5)
    b = PKBatchSampler(pids, 4, 3)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == {"seed": 11, "epoch": 5}
    assert list(a) == list(b)
    with pytest.raises(ValueError, match="epoch"):
        b.load_state_dict({"seed": 1})


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ddp_shares_are_disjoint_equal_and_cover_every_image(world_size, seed):
    pids = random_pids(seed, 23, 4)
    shares = []
    for rank in range(world_size):
        sampler = PKBatchSampler(pids, 5, 4, seed=seed, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shares.append(list(sampler))
        assert len(shares[-1]) == len(sampler)
        for batch in shares[-1]:
            check_batch(batch, pids, 5, 4)
    assert len({len(s) for s in shares}) == 1
    as_sets = [{tuple(b) for b in share} for share in shares]
    for r in range(world_size):
        for q in range(r + 1, world_size):
            assert not as_sets[r] & as_sets[q], f"ranks {r} and {q} share a batch"
    seen = {i for share in shares for batch in share for i in batch}
    assert seen == set(range(len(pids)))


def test_ddp_shares_interleave_to_the_single_process_plan():
    # Without padding (batch count divisible by world_size) rank r gets batches r, r + W, ...
    pids = [i // 4 for i in range(48)]  # 12 ids x 4 images, P = 3, K = 4 -> 4 batches
    single = list(PKBatchSampler(pids, 3, 4, seed=4))
    assert len(single) == 4
    r0 = list(PKBatchSampler(pids, 3, 4, seed=4, rank=0, world_size=2))
    r1 = list(PKBatchSampler(pids, 3, 4, seed=4, rank=1, world_size=2))
    assert r0 == single[0::2] and r1 == single[1::2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_identities": 9}, r"num_identities=9 .*8 identities"),
        ({"num_identities": 1}, "num_identities: expected an integer >= 2"),
        ({"num_instances": 0}, "num_instances: expected an integer >= 1"),
        ({"rank": 2, "world_size": 2}, "rank must be in"),
        ({"world_size": 0}, "world_size: expected an integer >= 1"),
        ({"seed": -1}, "seed: expected an integer >= 0"),
        ({"num_instances": 2.5}, "num_instances: expected an integer"),
        ({"num_instances": 6}, r"num_instances=6 \(K .*5 images of the data's largest identity"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    args = {"num_identities": 4, "num_instances": 4, **kwargs}
    pids = [i % 8 for i in range(40)]
    with pytest.raises(ValueError, match=match):
        PKBatchSampler(
            pids,
            args.pop("num_identities"),
            args.pop("num_instances"),
            **args,
        )


def test_empty_pids_and_negative_epoch_raise():
    with pytest.raises(ValueError, match="pids is empty"):
        PKBatchSampler([], 2, 4)
    with pytest.raises(ValueError, match="epoch"):
        PKBatchSampler([0, 1], 2, 1).set_epoch(-1)
