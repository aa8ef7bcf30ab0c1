"""GTE and DistillCSE losses against hand-written loops, and GradCache against the plain loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import _create_minibatch

from indus.retriever.losses import DistillCSELoss, GTELoss, gte_loss
from indus.retriever.losses.gte import text_groups


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


def reference_gte(q, d, negs=(), tau=0.02, same=None):
    """The GTE loss with explicit loops over the four sums (and the hard negatives).

    ``same(i, j, kind)`` says whether a term is a duplicate to skip; by default only the self terms of the
    same-type sums are skipped.
    """
    b = len(q)
    same = same or (lambda i, j, kind: kind in ("qq", "dd") and i == j)
    losses = []
    for i in range(b):
        z = 0.0
        for j in range(b):
            if not same(i, j, "qd"):
                z += math.exp(_cos(q[i], d[j]) / tau)
            if not same(i, j, "qq"):
                z += math.exp(_cos(q[i], q[j]) / tau)
            if not same(i, j, "dq"):
                z += math.exp(_cos(q[j], d[i]) / tau)
            if not same(i, j, "dd"):
                z += math.exp(_cos(d[j], d[i]) / tau)
            for n in negs:
                z += math.exp(_cos(q[i], n[j]) / tau)
        losses.append(-math.log(math.exp(_cos(q[i], d[i]) / tau) / z))
    return sum(losses) / b


def text_rule(anchors, positives):
    """Which terms the masked partition skips, stated on the texts (see ``pair_masks``)."""
    b = len(anchors)

    def related(i):
        return [j for j in range(b) if anchors[j] == anchors[i] or positives[j] == positives[i]]

    def later_copy(column, j):
        return column.index(column[j]) != j

    def same(i, j, kind):
        if kind == "qd":
            return j != i and (positives[j] in {positives[r] for r in related(i)} or later_copy(positives, j))
        if kind == "dq":
            return j != i and (anchors[j] in {anchors[r] for r in related(i)} or later_copy(anchors, j))
        if kind == "qq":
            return anchors[j] == anchors[i] or later_copy(anchors, j)
        return positives[j] == positives[i] or later_copy(positives, j)

    return same


@pytest.fixture
def embeddings():
    g = torch.Generator().manual_seed(0)
    q, d, n = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    return q, d, n


@pytest.mark.parametrize("tau", [0.02, 0.5])
def test_gte_equals_hand_written_loops_3x3(embeddings, tau):
    q, d, _ = embeddings
    assert float(gte_loss(q, d, temperature=tau)) == pytest.approx(reference_gte(q, d, tau=tau), rel=1e-9)


def test_gte_equals_sentence_transformers_four_direction_mnrl(embeddings):
    """The same formula as sentence-transformers' MNRL with all four directions in one joint partition."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    q, d, _ = embeddings
    mnrl = MultipleNegativesRankingLoss(
        None,
        scale=50.0,
        partition_mode="joint",
        directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
    )
    assert float(gte_loss(q, d, temperature=0.02)) == pytest.approx(
        float(mnrl.compute_loss_from_embeddings([q, d], None)), rel=1e-9
    )


def test_positive_counts_twice_so_loss_is_at_least_log2():
    q = torch.eye(3, dtype=torch.float64)  # orthogonal pairs: every negative term vanishes at tau -> 0
    assert float(gte_loss(q, q.clone(), temperature=0.01)) == pytest.approx(math.log(2), abs=1e-12)


def test_hard_negatives_match_reference_and_change_the_loss_as_expected(embeddings):
    q, d, n = embeddings
    base = float(gte_loss(q, d))
    with_neg = float(gte_loss(q, d, [n]))
    assert with_neg == pytest.approx(reference_gte(q, d, [n]), rel=1e-9)
    assert with_neg > base  # more mass in Z
    hard = float(gte_loss(q, d, [q + 0.01 * n]))  # negatives almost equal to the queries: a big increase
    assert hard > with_neg and hard - base > 1.0
    # queries close to one direction, negatives opposite to all of them: exp(-2/tau) adds nothing measurable
    q = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64) + 0.1 * q
    assert float(gte_loss(q, d, [-q])) == pytest.approx(float(gte_loss(q, d)), rel=1e-12)


def test_duplicate_texts_are_masked_as_false_negatives(micro_st):
    anchors = ["claim one", "claim two", "claim one", "claim three"]  # pair 2 repeats pair 0's anchor
    positives = ["abstract A", "abstract B", "abstract C", "abstract B"]  # pair 3 repeats pair 1's positive
    features = [micro_st.preprocess(anchors), micro_st.preprocess(positives)]
    groups = text_groups(features)
    assert groups[0].tolist()[0] == groups[0].tolist()[2] and groups[1].tolist()[1] == groups[1].tolist()[3]
    g = torch.Generator().manual_seed(1)
    q, d = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.randn(4, 8, generator=g, dtype=torch.float64)

    same = text_rule(anchors, positives)
    masked = float(gte_loss(q, d, groups=groups))
    assert masked == pytest.approx(reference_gte(q, d, same=same), rel=1e-9)
    assert masked != pytest.approx(float(gte_loss(q, d)), rel=1e-6)


def test_exact_duplicate_pair_contributes_its_loss_without_the_copy():
    """A pair repeated in the batch, masked, has exactly the loss it has without its copy."""
    g = torch.Generator().manual_seed(2)
    q, d = torch.randn(2, 6, generator=g, dtype=torch.float64), torch.randn(2, 6, generator=g, dtype=torch.float64)
    q3, d3 = torch.cat([q[:1], q]), torch.cat([d[:1], d])  # pairs (0, 0, 1)
    groups = [torch.tensor([0, 0, 1]), torch.tensor([2, 2, 3])]
    per_row = [_row_loss(q, d, i) for i in range(2)]  # the 2-pair batch, row by row
    assert float(gte_loss(q3, d3, groups=groups)) == pytest.approx((2 * per_row[0] + per_row[1]) / 3, rel=1e-9)
    assert float(gte_loss(q3, d3)) > float(gte_loss(q3, d3, groups=groups))  # unmasked: the copy is a negative


def _row_loss(q, d, i, tau=0.02):
    b = len(q)
    z = sum(math.exp(_cos(q[i], d[j]) / tau) + math.exp(_cos(q[j], d[i]) / tau) for j in range(b))
    z += sum(math.exp(_cos(q[i], q[j]) / tau) + math.exp(_cos(d[j], d[i]) / tau) for j in range(b) if j != i)
    return -math.log(math.exp(_cos(q[i], d[i]) / tau) / z)


# --- the micro model: GradCache against the plain loss -------------------------------------------------------------


@pytest.fixture
def micro_st(micro_model_dir):
    from indus.models import load_sentence_transformer

    return load_sentence_transformer(micro_model_dir, max_seq_length=32).double()  # float64: tight comparisons


ANCHORS = [
    "stellar winds",
    "dark matter halos",
    "protein folding",
    "ocean heat uptake",
    "gene regulation",
    "solar flares",
    "cloud feedback",
]
POSITIVES = [
    "winds blown by stars",
    "halos of dark matter around galaxies",
    "how proteins fold",
    "the ocean takes up heat",
    "how genes are regulated",
    "flares on the sun",
    "clouds amplify warming",
]
NEGATIVES = [
    "a recipe for bread",
    "football results",
    "a train timetable",
    "poetry",
    "tax law",
    "knitting",
    "a chess opening",
]


def _grads(model, loss, columns, labels=None, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    features = [model.preprocess(c) for c in columns]
    value = loss(features, labels)
    value.backward()
    return float(value.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("with_negatives", [False, True])
def test_cached_gradients_match_uncached(micro_st, with_negatives):
    micro_st.eval()  # no dropout: both paths see the same network
    columns = [ANCHORS, POSITIVES] + ([NEGATIVES] if with_negatives else [])
    plain_value, plain = _grads(micro_st, GTELoss(micro_st), columns)
    cached_value, cached = _grads(micro_st, GTELoss(micro_st, mini_batch_size=3), columns)
    assert cached_value == pytest.approx(plain_value, rel=1e-10)
    assert plain.keys() == cached.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(cached[name], plain[name], rtol=1e-8, atol=1e-10), name


def test_cached_replays_dropout_masks(micro_st):
    """With dropout on, the cached gradient is that of the same mini-batches embedded once with a graph."""
    micro_st.train()
    loss = GTELoss(micro_st, mini_batch_size=3)
    _, cached = _grads(micro_st, loss, [ANCHORS, POSITIVES], seed=7)

    micro_st.zero_grad()
    torch.manual_seed(7)
    features = [micro_st.preprocess(c) for c in (ANCHORS, POSITIVES)]
    groups = text_groups(features)
    reps = []
    for f in features:  # the same order of random draws as GradCache's first pass
        reps.append(
            torch.cat(
                [micro_st(_create_minibatch(f, s, s + 3))["sentence_embedding"] for s in range(0, len(ANCHORS), 3)]
            )
        )
    gte_loss(reps[0], reps[1], groups=groups).backward()
    for name, p in micro_st.named_parameters():
        if p.grad is not None:
            assert torch.allclose(cached[name], p.grad, rtol=1e-8, atol=1e-10), name
    micro_st.eval()


# --- DistillCSE ----------------------------------------------------------------------------------------------------


def reference_kd(sq, sd, tq, td, tau=0.02, tau_kd=4.0):
    """Explicit loops: cross-entropy between the softened teacher and student rows (query -> passages)."""
    b, total = len(sq), 0.0
    for i in range(b):
        s_logits = [_cos(sq[i], sd[j]) / tau / tau_kd for j in range(b)]
        t_logits = [_cos(tq[i], td[j]) / tau / tau_kd for j in range(b)]
        s_norm = math.log(sum(math.exp(x) for x in s_logits))
        t_norm = sum(math.exp(x) for x in t_logits)
        total += -sum(math.exp(t) / t_norm * (s - s_norm) for s, t in zip(s_logits, t_logits))
    return total / b


def test_distillcse_equals_hand_written_reference(embeddings, micro_st):
    q, d, _ = embeddings
    g = torch.Generator().manual_seed(3)
    tq, td = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    loss = DistillCSELoss(micro_st, tau_kd=4.0, kd_weight=0.5, contrastive_weight=2.0, mask_duplicates=False)
    labels = torch.cat([tq, td], dim=1)  # (B, 2 * D_T), teacher width differs from the student's
    value = float(loss.calculate_loss([[q], [d]], labels))
    expected = 0.5 * 16 * reference_kd(q, d, tq, td) + 2.0 * reference_gte(q, d)
    assert value == pytest.approx(expected, rel=1e-6)


def test_embedding_term_equals_hand_written_reference(embeddings, micro_st):
    q, d, _ = embeddings
    g = torch.Generator().manual_seed(5)
    tq, td = (
        torch.randn(*q.shape, generator=g, dtype=torch.float64),
        torch.randn(*d.shape, generator=g, dtype=torch.float64),
    )
    labels = torch.cat([tq, td], dim=1)
    plain = DistillCSELoss(micro_st, mask_duplicates=False)
    with_emb = DistillCSELoss(micro_st, mask_duplicates=False, embedding_weight=3.0)
    gap = float(with_emb.calculate_loss([[q], [d]], labels)) - float(plain.calculate_loss([[q], [d]], labels))
    texts = [(q[i], tq[i]) for i in range(len(q))] + [(d[i], td[i]) for i in range(len(d))]
    assert gap == pytest.approx(3.0 * sum(1 - _cos(s, t) for s, t in texts) / len(texts), rel=1e-6)
    assert float(
        DistillCSELoss(micro_st, kd_weight=0.0, contrastive_weight=0.0, embedding_weight=1.0).calculate_loss(
            [[q], [d]], torch.cat([2 * q, d], dim=1)
        )
    ) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="as wide as the teacher"):
        with_emb.calculate_loss([[q], [d]], torch.cat([tq[:, :-1], td[:, :-1]], dim=1))


def test_distilling_a_model_into_itself_has_no_kd_gradient(micro_st):
    micro_st.eval()
    with torch.no_grad():
        teacher = torch.cat([micro_st.encode(c, convert_to_tensor=True) for c in (ANCHORS, POSITIVES)], dim=1)
    _, grads = _grads(micro_st, DistillCSELoss(micro_st, contrastive_weight=0.0), [ANCHORS, POSITIVES], teacher)
    assert max(float(g.abs().max()) for g in grads.values()) < 1e-5
    shuffled = teacher[torch.tensor([3, 0, 6, 1, 5, 2, 4])]  # a different teacher: a real gradient
    _, grads = _grads(micro_st, DistillCSELoss(micro_st, contrastive_weight=0.0), [ANCHORS, POSITIVES], shuffled)
    assert max(float(g.abs().max()) for g in grads.values()) > 1e-3


@pytest.mark.parametrize("embedding_weight", [0.0, 3.0])
def test_distillcse_cached_matches_uncached(micro_st, embedding_weight):
    micro_st.eval()
    g = torch.Generator().manual_seed(4)
    width = micro_st.get_embedding_dimension() if embedding_weight else 16  # the embedding term needs equal widths
    teacher = torch.randn(len(ANCHORS), 3 * width, generator=g, dtype=torch.float64)
    columns = [ANCHORS, POSITIVES, NEGATIVES]
    v1, plain = _grads(micro_st, DistillCSELoss(micro_st, embedding_weight=embedding_weight), columns, teacher)
    v2, cached = _grads(
        micro_st, DistillCSELoss(micro_st, mini_batch_size=2, embedding_weight=embedding_weight), columns, teacher
    )
    assert v2 == pytest.approx(v1, rel=1e-10)
    for name in plain:
        assert torch.allclose(cached[name], plain[name], rtol=1e-8, atol=1e-10), name


def test_distillcse_rejects_missing_teacher(micro_st):
    features = [micro_st.preprocess(ANCHORS[:2]), micro_st.preprocess(POSITIVES[:2])]
    with pytest.raises(ValueError, match="teacher embeddings"):
        DistillCSELoss(micro_st)(features, None)
