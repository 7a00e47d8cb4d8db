"""One COBRA training step: views, pseudo-anomalies, adversaries, and the loss on all of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from robustad import distributed
from robustad.methods.adversarial import frozen_batchnorm_stats, pgd_ascend_loss
from robustad.methods.cobra.config import AdversarialConfig, LossConfig
from robustad.methods.cobra.loss import cobra_contrastive_loss, shift_classification_loss
from robustad.methods.training import net_of
from robustad.models.heads import ShiftContrastiveNet
from robustad.transforms.pseudo_anomaly import PseudoAnomalySet
from robustad.transforms.views import LightViews


@dataclass
class TaggedBatch:
    """Images with the tags the contrastive loss needs to find positive and opposite pairs."""

    images: torch.Tensor
    instance_ids: torch.Tensor
    shift_ids: torch.Tensor
    view_ids: torch.Tensor
    is_clean: torch.Tensor

    @staticmethod
    def cat(batches: list["TaggedBatch"]) -> "TaggedBatch":
        return TaggedBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in TaggedBatch.__dataclass_fields__))

    def __len__(self) -> int:
        return self.images.shape[0]


class CobraObjective:
    """Computes the COBRA loss of a batch of normal images, adversarial training included.

    Batch layout: two light views of every image, each expanded into its K shifts (view first,
    then shift, so that an image and its pseudo-anomaly share the same crop and colours, which
    is what makes them an opposite pair "in the same view").
    Adversaries start from view 0 and join the batch as positives of their clean originals.
    mode "paper": one adversary maximising the contrastive loss, one maximising H's
    cross-entropy. mode "reference": as the reference code, three adversaries: against the
    other view, toward a different shift of the same image, and against H. mode "joint": one
    adversary maximising the contrastive loss plus H's cross-entropy, which joins both losses
    (half the crafting and a smaller loss batch than "paper").
    """

    def __init__(
        self,
        net: ShiftContrastiveNet,
        pseudo_anomalies: PseudoAnomalySet,
        views: LightViews,
        loss: LossConfig,
        adversarial: AdversarialConfig,
        accept: Callable[[torch.Tensor], torch.Tensor] | None = None,
        redraws: int = 0,
    ):
        self.net = net
        self.pseudo_anomalies = pseudo_anomalies
        # the pseudo-anomaly filter (robustad.methods.pseudo_filter) and its tallies, when it is on
        self.accept, self.redraws = accept, redraws
        self.filter_counts: Counter = Counter()
        self.views = views
        self.loss_config = loss
        self.adv = adversarial
        # PGD steps and step size of the training adversaries; fall_back() raises them (the config stays as it was)
        self.steps, self.step_size = adversarial.steps, adversarial.step_size

    # --- batch construction -----------------------------------------------------------------
    def clean_batch(self, x: torch.Tensor, generator: torch.Generator | None) -> TaggedBatch:
        parts = []
        for view in range(2):
            shifted, shift_ids, instance_ids = self.pseudo_anomalies.expand(
                self.views(x, generator), generator, self.accept, self.redraws, self.filter_counts
            )
            parts.append(
                TaggedBatch(
                    shifted,
                    instance_ids,
                    shift_ids,
                    torch.full_like(shift_ids, view),
                    torch.ones_like(shift_ids, dtype=torch.bool),
                )
            )
        return TaggedBatch.cat(parts)

    # --- losses -------------------------------------------------------------------------------
    def _contrastive(self, z: torch.Tensor, batch: TaggedBatch):
        cfg = self.loss_config
        return cobra_contrastive_loss(
            z,
            batch.instance_ids,
            batch.shift_ids,
            batch.view_ids,
            batch.is_clean,
            variant=cfg.contrastive,
            temperature=cfg.temperature,
            opposite_weight=cfg.opposite_weight,
        )

    def loss(self, contrastive_batch: TaggedBatch, classification_batch: TaggedBatch | None):
        """Full loss; the classification batch (clean + adversaries against H) feeds L_CLS only."""
        n = len(contrastive_batch)
        images = contrastive_batch.images
        if classification_batch is not None:
            images = torch.cat([images, classification_batch.images])
        out = self.net(images)
        z, tags = distributed.gather_contrastive(out.projection[:n], contrastive_batch)
        terms = self._contrastive(z, tags)
        total = terms.total
        metrics = {"l_cl": float(terms.l_cl), "l_opp": float(terms.l_opp)}
        if self.loss_config.classification:
            shift_ids = contrastive_batch.shift_ids
            if classification_batch is not None:
                shift_ids = torch.cat([shift_ids, classification_batch.shift_ids])
            l_cls = shift_classification_loss(out.shift_logits, shift_ids)
            total = total + l_cls
            metrics["l_cls"] = float(l_cls.detach())
        metrics["loss"] = float(total.detach())
        return total, metrics

    # --- adversaries --------------------------------------------------------------------------
    def _pgd(self, loss_fn, x, generator):
        return pgd_ascend_loss(
            loss_fn, x, self.adv.eps, self.steps, self.step_size, self.adv.random_start, generator
        )

    def fall_back(self) -> None:
        """Craft the remaining adversaries with PGD-adversarial.fallback_steps (default step size)."""
        self.steps, self.step_size = self.adv.fallback_steps, None

    def shift_accuracy(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """Accuracy of the shift head H on every shift of the images x: clean, under the training
        adversary (its steps and step size) and under PGD-adversarial.guard_steps on H's
        cross-entropy. OverfitGuard's probe: the network should be in eval mode."""
        shifted, shift_ids, _ = self.pseudo_anomalies.expand(x, generator)
        net = net_of(self)  # the probe's passes stay out of DistributedDataParallel's gradient sync

        def shift_loss(images):
            return F.cross_entropy(net(images).shift_logits, shift_ids, reduction="sum")

        def accuracy(images):
            with torch.no_grad():
                return float((net(images).shift_logits.argmax(1) == shift_ids).float().mean())

        eps = self.adv.eps
        training = pgd_ascend_loss(shift_loss, shifted, eps, self.steps, self.step_size, self.adv.random_start,
                                   generator)
        pgd = pgd_ascend_loss(shift_loss, shifted, eps, self.adv.guard_steps, None, True, generator)
        return {"clean": accuracy(shifted), "train_attack": accuracy(training), "pgd": accuracy(pgd)}

    def adversaries(self, clean: TaggedBatch, generator: torch.Generator | None):
        """Return (adversaries for the contrastive batch, adversaries for L_CLS only)."""
        cfg = self.loss_config
        source_mask = clean.view_ids == 0
        source = TaggedBatch(*(getattr(clean, f)[source_mask] for f in TaggedBatch.__dataclass_fields__))
        with torch.no_grad():
            reference = self.net(clean.images).projection
        as_adversary = lambda images: TaggedBatch(  # noqa: E731
            images, source.instance_ids, source.shift_ids, source.view_ids, torch.zeros_like(source.is_clean)
        )

        contrastive_adv, classification_adv = [], []
        if self.adv.mode == "joint" and cfg.contrastive != "none" and cfg.classification:
            batch_tags = TaggedBatch.cat([clean, as_adversary(source.images)])

            def whole_loss(x_adv):
                out = self.net(x_adv)
                contrastive = self._contrastive(torch.cat([reference, out.projection]), batch_tags).total
                # both terms as the training loss weighs them (means), so neither drowns the other's sign
                return contrastive + F.cross_entropy(out.shift_logits, source.shift_ids)

            return as_adversary(self._pgd(whole_loss, source.images, generator)), None
        if cfg.contrastive != "none":
            if self.adv.mode in ("paper", "joint"):
                # Maximise the whole contrastive loss with the adversary inserted as a positive.
                batch_tags = TaggedBatch.cat([clean, as_adversary(source.images)])

                def contrastive_loss(x_adv):
                    z = torch.cat([reference, self.net(x_adv).projection])
                    return self._contrastive(z, batch_tags).total

                contrastive_adv.append(as_adversary(self._pgd(contrastive_loss, source.images, generator)))
            else:
                view1_mask = clean.view_ids == 1
                other_view = reference[view1_mask]
                view1 = TaggedBatch(*(getattr(clean, f)[view1_mask] for f in TaggedBatch.__dataclass_fields__))
                # Adversary 1: pull the view away from its other view (pairwise NT-Xent).
                pair_tags = TaggedBatch.cat([as_adversary(source.images), view1])

                def pairwise_loss(x_adv):
                    z = torch.cat([self.net(x_adv).projection, other_view])
                    return cobra_contrastive_loss(
                        z,
                        pair_tags.instance_ids,
                        pair_tags.shift_ids,
                        pair_tags.view_ids,
                        pair_tags.is_clean,
                        variant="cl",
                        temperature=cfg.temperature,
                    ).total

                contrastive_adv.append(as_adversary(self._pgd(pairwise_loss, source.images, generator)))
                # Adversary 2: move the image toward another shift of itself (toward its opposite).
                target = self._other_shift_features(reference[source_mask], source, generator)

                def toward_opposite(x_adv):
                    return F.cosine_similarity(self.net(x_adv).projection, target, dim=1).sum()

                contrastive_adv.append(as_adversary(self._pgd(toward_opposite, source.images, generator)))
        if cfg.classification:

            def shift_loss(x_adv):
                return F.cross_entropy(self.net(x_adv).shift_logits, source.shift_ids, reduction="sum")

            classification_adv.append(as_adversary(self._pgd(shift_loss, source.images, generator)))
        join = lambda parts: TaggedBatch.cat(parts) if parts else None  # noqa: E731
        return join(contrastive_adv), join(classification_adv)

    def _other_shift_features(self, z: torch.Tensor, source: TaggedBatch, generator) -> torch.Tensor:
        """For each sample (shift k of image i), the feature of image i under a random shift k' != k."""
        num_shifts = self.pseudo_anomalies.num_shifts
        num_images = int(source.instance_ids.max()) + 1
        offset = torch.randint(1, num_shifts, source.shift_ids.shape, generator=generator, device=z.device)
        target_shift = (source.shift_ids.to(z.device) + offset) % num_shifts
        # expand() is shift-major: the row of (shift k, image i) is k * num_images + i.
        return z[target_shift * num_images + source.instance_ids.to(z.device)]

    # --- the step -----------------------------------------------------------------------------
    def step(self, x: torch.Tensor, generator: torch.Generator | None):
        """Return (loss to back-propagate, metrics) for a batch of normal images x in [0,1]."""
        clean = self.clean_batch(x, generator)
        contrastive_batch, classification_batch = clean, None
        if self.adv.enabled and self.adv.eps > 0:
            with frozen_batchnorm_stats(self.net):
                contrastive_adv, classification_adv = self.adversaries(clean, generator)
            if contrastive_adv is not None:
                contrastive_batch = TaggedBatch.cat([clean, contrastive_adv])
            classification_batch = classification_adv
        return self.loss(contrastive_batch, classification_batch)
