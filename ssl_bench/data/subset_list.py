"""Published label subsets (the 1% / 10% ImageNet lists) as indices into our training split.

Two formats, as their sources write them:

* text, one image per line: SimCLR's ``imagenet_subsets/1percent.txt`` (12,811 lines) and ``10percent.txt``
  (128,116), file names such as ``n01440764_10026.JPEG`` (github.com/google-research/simclr; TFDS serves the same
  subsets as ``imagenet2012_subset/1pct`` and ``/10pct``). Blank lines and ``#`` comments are skipped; a line may
  also be a path.
* ``.npy``, a 1-D string array of image paths: VISSL's ``disk_filelist`` images file (``<split>_images.npy``, written by
  ``extra_scripts/datasets/create_imagenet_data_files.py`` as ``<root>/<class>/<file>``; VISSL's
  ``docs/source/evaluations/semi_supervised.rst`` fills its ``google-imagenet1k-per01`` / ``-per10`` datasets from
  SimCLR's lists this way). VISSL's labels file is not needed: labels come from our class folders.

An entry is matched by its file name; where several training images share that name (possible in a generic folder
tree, never in ImageNet), by its parent folder too. A name that is not in the training split is an error naming the
file and the first missing names: the subset would silently be another one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
from torch.utils.data import Dataset

from ssl_bench.config import ConfigError
from ssl_bench.data.folder import image_paths

FORMATS = (
    "a text file with one image file name per line (SimCLR's imagenet_subsets/1percent.txt: n01440764_10026.JPEG) "
    "or a .npy array of image paths (VISSL's disk_filelist <split>_images.npy)"
)
SHOWN = 5  # missing names quoted in an error


def read_names(path: Path) -> list[str]:
    """The image names or paths a subset file lists, in its order."""
    if not path.is_file():
        raise ConfigError(f"label subset file {path} does not exist; expected {FORMATS}")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:  # an object array (needs pickle) or not a .npy file
            raise ConfigError(
                f"{path}: not a .npy array of strings ({err}); save the paths as np.array(paths, dtype=str), as "
                "VISSL's create_imagenet_data_files.py does"
            ) from None
        if array.ndim != 1 or array.dtype.kind not in "US":
            raise ConfigError(f"{path}: a {array.ndim}-d {array.dtype} array; expected a 1-d array of image paths")
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in array.tolist()]
    else:
        lines = path.read_text().splitlines()
        names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise ConfigError(f"label subset file {path} lists no image; expected {FORMATS}")
    repeated = [name for name, n in Counter(names).items() if n > 1]
    if repeated:
        raise ConfigError(f"{path} lists {len(repeated)} image(s) more than once ({', '.join(repeated[:SHOWN])})")
    return names


def listed_subset(path: str | Path, train: Dataset, dataset: str) -> list[int]:
    """Sorted indices into ``train`` of the images ``path`` lists; ``dataset`` names the data in messages."""
    path = Path(path).expanduser()
    names = read_names(path)
    files = image_paths(train)
    if files is None:
        raise ConfigError(
            f"semisup.subset_files: {dataset}'s images are not read from files, so the file names of {path} cannot "
            "select them; use a dataset read from an image tree (imagenet, folder) or leave semisup.subset_files unset "
            "for class-balanced subsets"
        )
    by_name: dict[str, list[int]] = {}
    for i, file in enumerate(files):
        by_name.setdefault(Path(file).name, []).append(i)
    ids, missing, ambiguous = [], [], []
    for entry in names:
        parts = PurePosixPath(entry.replace("\\", "/")).parts
        hits = by_name.get(parts[-1], [])
        if len(hits) > 1 and len(parts) > 1:
            hits = [i for i in hits if Path(files[i]).parent.name == parts[-2]]
        if len(hits) == 1:
            ids.append(hits[0])
        elif hits:
            ambiguous.append(entry)
        else:
            missing.append(entry)
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
        raise ConfigError(
            f"{path}: {len(missing)} of its {len(names)} images are not in the {dataset} training split of "
            f"{len(files):,} images ({shown}). A published list needs the whole training set it was drawn from: "
            "point --data-root at it and keep data.num_train=0, or leave semisup.subset_files unset to draw "
            "class-balanced subsets from the images you have"
        )
    if ambiguous:
        raise ConfigError(
            f"{path}: {len(ambiguous)} listed name(s) match several training images ({', '.join(ambiguous[:SHOWN])}); "
            "list them as <class folder>/<file name>"
        )
    return sorted(ids)
