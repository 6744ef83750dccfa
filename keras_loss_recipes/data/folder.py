"""A folder of images, one subfolder per class (`data=folder`), as Keras's image_dataset_from_directory reads it.

    my_images/
        cats/  001.png 002.jpg ...
        dogs/  ...

    python train.py data=folder data.dir=my_images [data.image_size=[64,64]] [data.color_mode=rgb]

Classes are the subfolders in sorted order (their names are recorded in the
run); images are PNG, JPEG, BMP or GIF files, decoded with Pillow. With
`data.image_size` null every image must have one size; set it to resize them
all. `data.color_mode` is grayscale (1 channel) or rgb (3). Test and validation
images are split off (stratified, seeded: `data.test_examples`,
`data.val_examples`). The images stay on disk: each batch is decoded when the
fit takes it (`ImageFiles`), so memory does not grow with the folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_loss_recipes.data.arrays import splits_from_arrays
from keras_loss_recipes.data.splits import Splits
from keras_loss_recipes.runtime.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
COLOR_MODES = {"grayscale": "L", "rgb": "RGB"}  # data.color_mode -> Pillow's mode


def check_folder(cfg) -> Path:
    if cfg.dir in (None, ""):
        raise UserError("data.dir is not set: data=folder needs data.dir=/path/to/images with one subfolder "
                        "per class")
    path = Path(str(cfg.dir)).expanduser()
    if not path.is_dir():
        raise UserError(f"data.dir={cfg.dir}: directory does not exist")
    if cfg.color_mode not in COLOR_MODES:
        raise UserError(f"data.color_mode={cfg.color_mode!r}: valid choices: {', '.join(COLOR_MODES)}")
    size = cfg.image_size
    if size is not None and (len(size) != 2 or not all(isinstance(n, int) and n >= 1 for n in size)):
        raise UserError(f"data.image_size={list(size)}: must be [height, width], two integers >= 1")
    return path


def list_images(directory: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class names, image files and their labels; a UserError for a folder that holds no classes to learn."""
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(str(p) for p in (directory / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    with_images = sorted({classes[i] for i in labels})
    if len(with_images) < 2:
        raise UserError(f"data.dir={directory}: {len(with_images)} class folder(s) with images "
                        f"({', '.join(with_images) or 'none'}); a classifier needs at least 2, one subfolder "
                        f"of {'/'.join(IMAGE_SUFFIXES)} images per class")
    return classes, np.asarray(files), np.asarray(labels, dtype=np.int64)


def common_size(files: np.ndarray) -> tuple[int, int]:
    """(height, width) that every image has, read from the files' headers; a UserError naming two that differ."""
    from PIL import Image

    first = None
    for path in files:
        try:
            with Image.open(path) as image:
                size = image.size  # (width, height), from the header: nothing decoded
        except OSError as err:
            raise UserError(f"{path}: not an image Pillow can read ({err})") from None
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise UserError(f"data.dir: images of mixed sizes: {first[0]} is {first[1][0]}x{first[1][1]}, {path} "
                            f"is {size[0]}x{size[1]}; set data.image_size=[height,width] to resize them all")
    return first[1][1], first[1][0]


class ImageFiles:
    """Images that stay in their files until indexed: what the folder source holds instead of an array.

    `images[rows]` decodes those rows into a uint8 array (N, H, W, C), as the
    pipeline takes a batch; `images.subset(rows)` is another `ImageFiles`, as
    the splits take their part. So a folder of any size is streamed from disk,
    a batch at a time.
    """

    def __init__(self, files: np.ndarray, color_mode: str, size: tuple[int, int], resize: bool):
        self.files, self.color_mode, self.size, self.resize = files, color_mode, size, resize
        self.shape = (len(files), size[0], size[1], 1 if color_mode == "grayscale" else 3)
        self.dtype, self.ndim = np.dtype(np.uint8), 4

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, rows) -> ImageFiles:
        return ImageFiles(self.files[rows], self.color_mode, self.size, self.resize)

    def __getitem__(self, rows) -> np.ndarray:
        from PIL import Image

        files = self.files[rows]
        batch = np.empty((len(files), *self.shape[1:]), np.uint8)
        for i, path in enumerate(files):
            with Image.open(path) as image:
                image = image.convert(COLOR_MODES[self.color_mode])
                if self.resize:
                    image = image.resize((self.size[1], self.size[0]), Image.BILINEAR)
                batch[i] = np.asarray(image, dtype=np.uint8).reshape(self.shape[1:])
        return batch


def load_folder(cfg, split_seed: int) -> Splits:
    directory = check_folder(cfg)
    classes, files, labels = list_images(directory)
    size = tuple(int(n) for n in cfg.image_size) if cfg.image_size else common_size(files)
    images = ImageFiles(files, cfg.color_mode, size, resize=bool(cfg.image_size))
    splits = splits_from_arrays({"x_train": images, "y_train": labels}, cfg, split_seed, f"data.dir={cfg.dir}",
                                num_classes=len(classes))
    splits.class_names = classes
    return splits
