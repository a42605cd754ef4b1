import numpy as np
import pytest
import torch

import mmgraph.metrics.retrieval as retrieval
from mmgraph.errors import InputError
from mmgraph.metrics.retrieval import (
    coco_1k_5fold,
    hard_negative_accuracy,
    retrieval_metrics,
    retrieval_ranks,
)

KEYS = [f"{d}_{m}" for d in ("i2t", "t2i") for m in ("r1", "r5", "r10", "medr", "meanr")]

# ----------------------------------------------------------------------------
# An independent oracle: ``i2t`` and ``t2i`` of kuanghuei/SCAN evaluation.py
# (the similarity-matrix form of fartashf/vsepp's), transcribed loop by loop.
# ``order`` is the sort: the reference's ``argsort(d)[::-1]`` on scores
# without ties, a stable sort on -score where the test has ties.


def _reference_order(d):
    return np.argsort(d)[::-1]


def _stable_order(d):
    return np.argsort(-d, kind="stable")


def _summary(ranks):
    r1 = 100.0 * len(np.where(ranks < 1)[0]) / len(ranks)
    r5 = 100.0 * len(np.where(ranks < 5)[0]) / len(ranks)
    r10 = 100.0 * len(np.where(ranks < 10)[0]) / len(ranks)
    medr = np.floor(np.median(ranks)) + 1
    meanr = ranks.mean() + 1
    return (r1, r5, r10, medr, meanr)


def _oracle_i2t(sims, order=_reference_order):
    npts = sims.shape[0]
    ranks = np.zeros(npts)
    for index in range(npts):
        inds = order(sims[index])
        rank = 1e20
        for i in range(5 * index, 5 * index + 5, 1):
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:
                rank = tmp
        ranks[index] = rank
    return _summary(ranks), ranks


def _oracle_t2i(sims, order=_reference_order):
    npts = sims.shape[0]
    ranks = np.zeros(5 * npts)
    sims = sims.T
    for index in range(npts):
        for i in range(5):
            inds = order(sims[5 * index + i])
            ranks[5 * index + i] = np.where(inds == index)[0][0]
    return _summary(ranks), ranks


def _oracle(sims, order=_reference_order):
    r, _ = _oracle_i2t(sims, order)
    ri, _ = _oracle_t2i(sims, order)
    out = dict(zip(KEYS, r + ri))
    out["rsum"] = r[0] + r[1] + r[2] + ri[0] + ri[1] + ri[2]
    return out


def _oracle_general(sims, owner):
    """Best-rank rule with any caption -> image map, stable order on ties."""
    i2t = np.array(
        [
            min(np.where(_stable_order(row) == j)[0][0] for j in np.where(owner == i)[0])
            for i, row in enumerate(sims)
        ]
    )
    t2i = np.array([np.where(_stable_order(sims[:, j]) == owner[j])[0][0] for j in range(sims.shape[1])])
    return i2t, t2i


# ----------------------------------------------------------------------------
# Hand-computed cases.


def test_hand_computed_two_images():
    # Image 0 ranks captions 3, 0, 2, 1: its ground truth {0, 1} is best at
    # rank 1 (caption 0). Image 1 ranks 1, 2, 3, 0: {2, 3} best at rank 1.
    # Captions: 0 -> image 0 first, 1 -> image 0 second, 2 -> image 1 first,
    # 3 -> image 1 second.
    sims = np.array([[0.9, 0.1, 0.5, 0.95], [0.2, 0.8, 0.7, 0.3]])
    i2t, t2i = retrieval_ranks(sims, captions_per_image=2)
    assert i2t.tolist() == [1, 1]
    assert t2i.tolist() == [0, 1, 0, 1]
    m = retrieval_metrics(sims, captions_per_image=2)
    assert m == {
        "i2t_r1": 0.0, "i2t_r5": 100.0, "i2t_r10": 100.0, "i2t_medr": 2.0, "i2t_meanr": 2.0,
        "t2i_r1": 50.0, "t2i_r5": 100.0, "t2i_r10": 100.0, "t2i_medr": 1.0, "t2i_meanr": 1.5,
        "rsum": 450.0,
    }  # fmt: skip


def test_best_of_five_captions_and_recall_thresholds():
    # Image i's five captions sit at columns 5i..5i+4 of a 3 x 15 matrix. Row 0 places its best ground-truth
    # caption at rank 0, row 1 at rank 4, row 2 at rank 9.
    n_img, n_cap = 3, 15
    sims = np.zeros((n_img, n_cap))
    for i, best_rank in enumerate([0, 4, 9]):
        others = [j for j in range(n_cap) if j // 5 != i]
        gt = list(range(5 * i, 5 * i + 5))
        # best_rank non-GT captions first, then the five GT captions, then the rest.
        order = others[:best_rank] + gt[::-1] + others[best_rank:]
        sims[i, order] = np.arange(n_cap, 0, -1)
    i2t, _ = retrieval_ranks(sims)
    assert i2t.tolist() == [0, 4, 9]
    m = retrieval_metrics(sims)
    assert m["i2t_r1"] == 100.0 / 3
    assert m["i2t_r5"] == 200.0 / 3
    assert m["i2t_r10"] == 100.0
    assert m["i2t_medr"] == 5.0  # median rank 4, 1-based
    assert m["i2t_meanr"] == pytest.approx((0 + 4 + 9) / 3 + 1)


def test_median_rank_floors_an_even_median():
    # t2i ranks 0, 0, 1, 2 -> median 0.5 -> floor + 1 = 1; mean 0.75 + 1.
    sims = np.array([[3.0, 3.0, 1.0, 1.0], [2.0, 2.0, 2.0, 0.0], [0.0, 0.0, 3.0, 4.0]])
    owner = np.array([0, 0, 1, 2])
    _, t2i = retrieval_ranks(sims, image_of_caption=owner)
    assert t2i.tolist() == [0, 0, 1, 0]
    sims[2, 3] = -1.0  # caption 3's image 2 now ranks last of three
    _, t2i = retrieval_ranks(sims, image_of_caption=owner)
    assert t2i.tolist() == [0, 0, 1, 2]
    m = retrieval_metrics(sims, image_of_caption=owner)
    assert m["t2i_medr"] == 1.0
    assert m["t2i_meanr"] == 1.75


def test_ties_lower_index_ranks_first():
    # All scores equal: the order is that of a stable sort on -score, so
    # caption 0 (image 0) ranks first for every image, and image 0 for every
    # caption.
    sims = np.zeros((2, 4))
    i2t, t2i = retrieval_ranks(sims, captions_per_image=2)
    assert i2t.tolist() == [0, 2]
    assert t2i.tolist() == [0, 0, 1, 1]
    # A ground-truth caption tied with a lower-index negative loses the tie;
    # tied with a higher-index negative it wins.
    sims = np.array([[0.5, 0.1, 0.7, 0.0], [0.3, 0.3, 0.3, 0.3]])
    sims[0, 3] = 0.5  # ties caption 0 (GT of image 0) from a higher index
    sims[0, 2] = 0.2
    i2t, _ = retrieval_ranks(sims, captions_per_image=2)
    assert i2t[0] == 0
    sims[1] = [0.9, 0.6, 0.6, 0.1]  # GT caption 2 ties caption 1 from a higher index
    i2t, t2i = retrieval_ranks(sims, captions_per_image=2)
    assert i2t[1] == 2
    # t2i: caption 3 scores 0.5 with image 0 and 0.1 with its image 1
    # (rank 1); caption 2 scores 0.2 / 0.6 (rank 0); captions 0 and 1 of
    # image 0 score higher with image 1 (rank 1).
    assert t2i.tolist() == [1, 1, 0, 1]
    # Equal scores with both images: the lower image index wins.
    _, t2i = retrieval_ranks(np.array([[0.4, 0.4], [0.4, 0.4]]), captions_per_image=1)
    assert t2i.tolist() == [0, 1]


def test_ties_match_the_transcription_with_a_stable_sort():
    rng = np.random.default_rng(3)
    sims = rng.integers(0, 3, size=(12, 60)).astype(np.float64)  # many ties
    ours = retrieval_metrics(sims)
    assert ours == _oracle(sims, order=_stable_order)
    i2t, t2i = retrieval_ranks(sims)
    assert i2t.tolist() == _oracle_i2t(sims, _stable_order)[1].astype(int).tolist()
    assert t2i.tolist() == _oracle_t2i(sims, _stable_order)[1].astype(int).tolist()


# ----------------------------------------------------------------------------
# Equality with the reference on random matrices.


@pytest.mark.parametrize("seed,n_img", [(0, 7), (1, 30), (2, 64)])
def test_equals_reference_transcription(seed, n_img):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n_img, 16))
    cap = img.repeat(5, axis=0) + 1.5 * rng.normal(size=(5 * n_img, 16))
    sims = img @ cap.T
    ours = retrieval_metrics(sims)
    ref = _oracle(sims)
    assert ours == ref  # exact, to the last bit
    i2t, t2i = retrieval_ranks(sims)
    assert np.array_equal(i2t.numpy(), _oracle_i2t(sims)[1])
    assert np.array_equal(t2i.numpy(), _oracle_t2i(sims)[1])


def test_torch_numpy_and_dtypes_agree():
    rng = np.random.default_rng(5)
    sims = rng.normal(size=(20, 100))
    ref = retrieval_metrics(sims)
    assert retrieval_metrics(torch.from_numpy(sims)) == ref
    assert retrieval_metrics(torch.from_numpy(sims).float()) == retrieval_metrics(sims.astype(np.float32))
    x = torch.from_numpy(sims).requires_grad_()
    assert retrieval_metrics(x * 1) == ref
    ints = rng.integers(-5, 5, size=(20, 100))
    assert retrieval_metrics(ints) == retrieval_metrics(ints.astype(np.float64))


def test_chunked_pass_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(6)
    sims = rng.integers(0, 4, size=(23, 115)).astype(np.float32)
    whole = retrieval_ranks(sims)
    monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 300)  # 2 rows a chunk, a ragged last chunk
    chunked = retrieval_ranks(sims)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


def test_image_of_caption_generalises_the_layout():
    rng = np.random.default_rng(7)
    n_img = 9
    owner = np.concatenate([np.arange(n_img), rng.integers(0, n_img, size=25)])  # 1..several captions each
    sims = rng.integers(0, 5, size=(n_img, owner.size)).astype(np.float64)
    i2t, t2i = retrieval_ranks(sims, image_of_caption=owner)
    ref_i2t, ref_t2i = _oracle_general(sims, owner)
    assert i2t.tolist() == ref_i2t.tolist()
    assert t2i.tolist() == ref_t2i.tolist()
    # The default layout is the special case owner = j // 5.
    sims = rng.normal(size=(6, 30))
    assert retrieval_metrics(sims, image_of_caption=np.arange(30) // 5) == retrieval_metrics(sims)
    assert retrieval_metrics(sims[:, :18], captions_per_image=3) == retrieval_metrics(
        sims[:, :18], image_of_caption=torch.arange(18) // 3
    )


# ----------------------------------------------------------------------------
# The COCO 1K (5-fold) protocol.


def test_coco_1k_5fold_equals_the_evalrank_loop():
    rng = np.random.default_rng(8)
    n_img = 60  # 5 folds of 12 images / 60 captions
    img = rng.normal(size=(n_img, 8))
    sims = img @ (img.repeat(5, axis=0) + rng.normal(size=(5 * n_img, 8))).T
    results = []
    for i in range(5):
        shard = sims[i * 12 : (i + 1) * 12, i * 60 : (i + 1) * 60]
        r, _ = _oracle_i2t(shard)
        ri, _ = _oracle_t2i(shard)
        ar = (r[0] + r[1] + r[2]) / 3
        ari = (ri[0] + ri[1] + ri[2]) / 3
        rsum = r[0] + r[1] + r[2] + ri[0] + ri[1] + ri[2]
        results += [list(r) + list(ri) + [ar, ari, rsum]]
    mean_metrics = np.array(results).mean(axis=0)
    ours = coco_1k_5fold(sims)
    for k, key in enumerate(KEYS):
        assert ours[key] == pytest.approx(mean_metrics[k], rel=1e-12)
    assert ours["rsum"] == pytest.approx(mean_metrics[12], rel=1e-12)
    # The 1K numbers differ from the full-matrix (5K-style) ones.
    assert ours != retrieval_metrics(sims)


def test_coco_1k_5fold_on_a_full_size_matrix():
    gen = torch.Generator().manual_seed(0)
    n_img = 5000
    sims = torch.randn(n_img, 5 * n_img, generator=gen)
    # An informative diagonal: each image scores its own captions higher.
    owner = torch.arange(5 * n_img) // 5
    sims[owner, torch.arange(5 * n_img)] += 3.0
    folds = [
        retrieval_metrics(sims[f * 1000 : (f + 1) * 1000, f * 5000 : (f + 1) * 5000].numpy())
        for f in range(5)
    ]
    ours = coco_1k_5fold(sims)
    for key in ours:
        assert ours[key] == pytest.approx(np.mean([m[key] for m in folds]), rel=1e-12)
    assert 0.0 < ours["i2t_r1"] < 100.0 and 0.0 < ours["t2i_r1"] < 100.0
    full = retrieval_metrics(sims)  # the 5K protocol: one pass over 5,000 x 25,000
    # Five times the gallery: each recall can only drop.
    assert all(full[f"{d}_r{k}"] <= ours[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert full["i2t_meanr"] > ours["i2t_meanr"]
    # One fold checked against the reference loop (fold 2).
    shard = sims[2000:3000, 10000:15000].numpy()
    assert folds[2] == _oracle(shard)


def test_coco_1k_5fold_with_image_of_caption():
    rng = np.random.default_rng(9)
    sims = rng.normal(size=(10, 50))
    perm = rng.permutation(50)
    owner = (np.arange(50) // 5)[perm]  # captions shuffled across the matrix
    a = coco_1k_5fold(sims[:, perm], image_of_caption=owner)
    assert a == pytest.approx(coco_1k_5fold(sims))
    assert a != coco_1k_5fold(sims[:, perm])  # the default layout would pair them wrongly


# ----------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), (0, 5)])
def test_rejects_bad_shapes(shape):
    with pytest.raises(InputError, match="sims"):
        retrieval_metrics(np.zeros(shape))


def test_rejects_nan_and_names_its_position():
    sims = np.zeros((2, 10))
    sims[1, 7] = np.nan
    with pytest.raises(InputError, match="image 1, caption 7"):
        retrieval_metrics(sims)


def test_rejects_a_caption_count_off_the_layout():
    with pytest.raises(InputError, match="not 5 captions per image"):
        retrieval_metrics(np.zeros((3, 14)))
    with pytest.raises(InputError, match="shape \\[6\\]"):
        retrieval_metrics(np.zeros((3, 6)), image_of_caption=[0, 1, 2])
    with pytest.raises(InputError, match="image_of_caption\\[2\\] = 3"):
        retrieval_metrics(np.zeros((3, 4)), image_of_caption=[0, 1, 3, 2])
    with pytest.raises(InputError, match="no caption .*\\[1\\]"):
        retrieval_metrics(np.zeros((3, 4)), image_of_caption=[0, 0, 2, 2])
    with pytest.raises(InputError, match="integer"):
        retrieval_metrics(np.zeros((2, 2)), image_of_caption=np.array([0.0, 1.0]))
    with pytest.raises(InputError, match="equal folds"):
        coco_1k_5fold(np.zeros((12, 60)))


# ----------------------------------------------------------------------------
# Hard negatives.


def test_hard_negative_accuracy_dense_with_column_kinds():
    pos = np.array([1.0, 2.0, 3.0])
    neg = np.array([[0.0, 0.5], [2.0, 1.0], [4.0, 0.0]])
    # Caption 0 beats both; caption 1 ties its first negative (a failure);
    # caption 2 loses to its first.
    out = hard_negative_accuracy(pos, neg, kinds=["attribute", "relation"])
    assert out == {"overall": pytest.approx(1 / 3), "attribute": pytest.approx(1 / 3), "relation": 1.0}
    assert hard_negative_accuracy(torch.tensor(pos), torch.tensor(neg)) == {"overall": pytest.approx(1 / 3)}


def test_hard_negative_accuracy_ragged_with_kinds():
    pos = [1.0, 1.0]
    neg = [[0.5], [0.2, 1.5, 0.1]]
    kinds = [["object"], ["attribute", "relation", "object"]]
    out = hard_negative_accuracy(pos, neg, kinds)
    assert out == {"overall": 0.5, "attribute": 1.0, "object": 1.0, "relation": 0.0}


def test_hard_negative_accuracy_per_pair_kinds_on_dense_input():
    pos = torch.tensor([0.9, 0.4])
    neg = torch.tensor([[0.1, 0.95], [0.3, 0.2]])
    kinds = [["object", "relation"], ["relation", "relation"]]
    out = hard_negative_accuracy(pos, neg, kinds)
    # relation pairs: 0.9 > 0.95 no, 0.4 > 0.3 yes, 0.4 > 0.2 yes.
    assert out == {"overall": 0.5, "object": 1.0, "relation": pytest.approx(2 / 3)}


def test_hard_negative_all_ties_score_zero():
    assert hard_negative_accuracy(np.ones(4), np.ones((4, 3)))["overall"] == 0.0


def test_hard_negative_errors():
    with pytest.raises(InputError, match="no negative .*\\[1\\]"):
        hard_negative_accuracy([1.0, 1.0], [[0.0], []])
    with pytest.raises(InputError, match="caption 1: 2 negative"):
        hard_negative_accuracy([1.0, 1.0], [[0.0], [0.1, 0.2]], kinds=[["object"], ["object"]])
    with pytest.raises(InputError, match="NaN"):
        hard_negative_accuracy([1.0, np.nan], [[0.0], [0.1]])
    with pytest.raises(InputError, match="N = 3"):
        hard_negative_accuracy(np.ones(3), np.ones((2, 2)))
    with pytest.raises(InputError, match="overall"):
        hard_negative_accuracy(np.ones(2), np.zeros((2, 1)), kinds=["overall"])
    with pytest.raises(InputError, match="1-D"):
        hard_negative_accuracy(np.ones((2, 2)), np.zeros((2, 1)))
