"""The small base every method derives from: paper defaults in a frozen Config, a transform, a training step.

Optimisers, schedules, checkpoints, logging and data loading belong to the engine, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ssl_bench.backbone import Backbone
from ssl_bench.data.batch import Batch
from ssl_bench.data.types import DataInfo


@dataclass(frozen=True)
class MethodConfig:
    """Optimisation defaults shared by all methods; each method's Config overrides them with its paper's values.

    ``lr`` is the rate at a batch of 256 network inputs; the engine scales it linearly with the inputs a step sends
    (Goyal et al. 2017): the batch size times ``inputs_per_image`` (1, except RotNet with all four rotations: 4).
    ``epochs`` gives this method its own number of pretraining epochs instead of ``train.epochs`` (papers train
    methods for different budgets, e.g. Goyal et al.'s Jigsaw 105 epochs; a small preset may give a slow starter more).
    """

    lr: float = 0.1
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False  # Nesterov momentum (Gidaris et al.'s RotNet); plain momentum elsewhere
    epochs: int | None = None  # None = train.epochs

    @property
    def inputs_per_image(self) -> int:
        """Network inputs one image of the batch makes, for the rate's linear scaling (see ``lr``)."""
        return 1

    def check_data(self, data: DataInfo, requested: Collection[str] = ()) -> None:
        """Checks that need the loaded dataset (its size, image size), made before any training; a ConfigError if not.

        ``requested``: the keys set on the command line. A paper or preset default may be adapted to a small
        dataset with a warning (e.g. negatives capped at N - 1); an explicit request is honoured or refused.
        """


class Method(nn.Module):
    """A pretext task on the shared backbone.

    Subclasses set ``name`` and ``Config``, build their heads in ``__init__``, return the per-sample views
    from ``transform`` and compute the loss in ``training_step``. Side effects such as memory-bank updates
    happen inside ``training_step``, visibly. All state that must survive a restart (heads, banks) is a
    parameter or a buffer, so ``state_dict`` checkpoints it.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""  # how tables print it, e.g. "NPID++"; empty = name
    paper: ClassVar[str] = ""  # one line: authors, venue, arXiv id
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    trains: ClassVar[bool] = True  # False for the random-init baseline
    needs_labels: ClassVar[bool] = (
        False  # True: trains on the labelled train split, never on unlabelled pretraining data
    )
    # Faster R-CNN fine-tuning of this method's backbone: (lr, warm-up iterations) at batch 16. VISSL's VOC07+12
    # configs for PIRL Table 1 (facebookresearch/vissl @ 09270ed, configs/config/benchmark/object_detection/voc0712/):
    # 0.02 with 100 (iccv19/rn50_transfer_voc0712_detectron2_e2e.yaml: Goyal et al.'s, for supervised, Jigsaw and
    # every method without its own) and 0.002 with 1000 for NPID++ and PIRL (pirl_npid/). The runner hands it to the
    # detection config (``DetectionConfig.resolved``).
    detection_schedule: ClassVar[tuple[float, int]] = (0.02, 100)

    def __init__(self, backbone: Backbone, cfg: MethodConfig, data: DataInfo) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.data = data

    def transform(self) -> Callable[[Any], dict[str, Tensor]]:
        """Per-sample view maker used by the training DataLoader: image -> {"view name": tensor}.

        A method whose views can leave their colour to the device takes ``device_colour: bool = False``; with it
        true, a view comes as its uint8 geometry and its colour parameters (``data.device_augment``)."""
        raise NotImplementedError

    def training_step(self, batch: Batch) -> dict[str, Tensor]:
        """Returns {"loss": scalar tensor, ...anything else worth logging}."""
        raise NotImplementedError

    def embeddings(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """What this method's own heads offer to evaluations, beyond the backbone: input kind -> embedding function.

        ``"image"`` takes a batch of views (B, 3, H, W); ``"pooled"``, where given, is the same embedding from the
        backbone's pooled features (B, num_features), so that an evaluation holding those cached needs no second pass
        through the backbone (kNN); a pretext transform's name takes that transform's input (``"jigsaw"``: shuffled
        tiles (B, 9, 3, t, t); ``"rotation"``: rotated views). The invariance evaluation compares f = ``"image"`` with
        g = the transform's (PIRL Fig. 4). Called on the trained method, in eval mode.
        """
        return {}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """The training step (so that DistributedDataParallel, which calls forward, wraps it)."""
        return self.training_step(batch)
