"""The training step: batch layout, adversaries inside the eps ball, finite losses in every mode."""

import pytest
import torch

from robustad.methods.adversarial import frozen_batchnorm_stats, pgd_ascend_loss
from robustad.methods.cobra.config import AdversarialConfig, LossConfig
from robustad.methods.cobra.objective import CobraObjective
from robustad.models.heads import ShiftContrastiveNet
from robustad.transforms import LightViews, PseudoAnomalySet


def _objective(mode="paper", contrastive="cobra", classification=True, names=("rotation",)):
    pseudo = PseudoAnomalySet(list(names))
    net = ShiftContrastiveNet(1, pseudo.num_shifts, width=4, projection_dim=16)
    adv = AdversarialConfig(mode=mode, eps=8 / 255, steps=2)
    loss = LossConfig(contrastive=contrastive, classification=classification)
    return CobraObjective(net, pseudo, LightViews(), loss, adv)


def test_clean_batch_pairs_each_image_with_its_shifts_in_the_same_view():
    obj = _objective()
    x = torch.rand(3, 1, 12, 12)
    batch = obj.clean_batch(x, torch.Generator().manual_seed(0))
    assert len(batch) == 2 * 4 * 3
    assert batch.view_ids.tolist() == [0] * 12 + [1] * 12
    # within a view block: shift-major, instance ids 0..2 for every shift
    assert batch.shift_ids[:12].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert batch.instance_ids[:12].tolist() == [0, 1, 2] * 4
    # shift 2 of an image is the 180-degree rotation of its shift-0 view
    assert torch.allclose(batch.images[6], torch.rot90(batch.images[0], 2, dims=(-2, -1)))


@pytest.mark.parametrize("mode", ["paper", "reference", "joint"])
@pytest.mark.parametrize(
    "contrastive,classification", [("cobra", True), ("cobra", False), ("cl", False), ("none", True), ("opposite", False)]
)
def test_step_gives_finite_loss_and_gradients(mode, contrastive, classification):
    obj = _objective(mode, contrastive, classification)
    loss, metrics = obj.step(torch.rand(4, 1, 12, 12), torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in obj.net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert "loss" in metrics


def test_adversaries_stay_in_the_eps_ball_and_are_tagged_as_positives():
    obj = _objective("reference")
    clean = obj.clean_batch(torch.rand(4, 1, 12, 12), torch.Generator().manual_seed(2))
    with frozen_batchnorm_stats(obj.net):
        contrastive_adv, classification_adv = obj.adversaries(clean, torch.Generator().manual_seed(3))
    source = clean.images[clean.view_ids == 0]
    assert len(contrastive_adv) == 2 * len(source)  # two contrastive adversaries in reference mode
    for adv in (contrastive_adv, classification_adv):
        images = adv.images.view(-1, *source.shape)
        assert (images - source).abs().max() <= 8 / 255 + 1e-6
        assert images.min() >= 0 and images.max() <= 1
        assert not adv.is_clean.any()
    assert torch.equal(classification_adv.instance_ids, clean.instance_ids[clean.view_ids == 0])


def test_the_joint_adversary_raises_both_losses_and_joins_both():
    obj = _objective("joint")
    clean = obj.clean_batch(torch.rand(4, 1, 12, 12), torch.Generator().manual_seed(2))
    with frozen_batchnorm_stats(obj.net):
        joint, classification_adv = obj.adversaries(clean, torch.Generator().manual_seed(3))
    source = clean.view_ids == 0
    assert classification_adv is None and len(joint) == int(source.sum())  # one adversary per source image
    assert (joint.images - clean.images[source]).abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():  # with the adversaries in the batch, the shift head does worse than on clean alone
        _, with_adv = obj.loss(type(clean).cat([clean, joint]), None)
        _, clean_only = obj.loss(clean, None)
    assert with_adv["l_cls"] > clean_only["l_cls"]
    # fewer images go through the network in a joint step than in a paper step (one adversary, not two)
    paper = _objective("paper")
    paper.net.load_state_dict(obj.net.state_dict())
    with frozen_batchnorm_stats(paper.net):
        contrastive_adv, cls_adv = paper.adversaries(clean, torch.Generator().manual_seed(3))
    assert len(contrastive_adv) + len(cls_adv) == 2 * len(joint)


def test_frozen_batchnorm_leaves_running_stats_alone():
    obj = _objective()
    bn = obj.net.encoder.stem[1]
    before = bn.running_mean.clone()
    obj.net.train()
    with frozen_batchnorm_stats(obj.net):
        obj.net(torch.rand(8, 1, 12, 12))
    assert torch.equal(bn.running_mean, before)
    obj.net(torch.rand(8, 1, 12, 12))
    assert not torch.equal(bn.running_mean, before)


def test_pgd_ascend_loss_increases_the_loss_within_budget():
    w = torch.randn(1, 1, 6, 6)
    x = torch.rand(5, 1, 6, 6) * 0.5 + 0.25
    loss = lambda z: (z * w).sum()  # noqa: E731
    x_adv = pgd_ascend_loss(loss, x, eps=0.1, steps=10)
    assert loss(x_adv) > loss(x)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    # the optimum of a linear loss is the corner x + eps * sign(w)
    assert torch.allclose(x_adv, x + 0.1 * w.sign(), atol=1e-5)
