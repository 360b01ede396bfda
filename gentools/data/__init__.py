"""Offline image datasets (digits, MNIST, Fashion-MNIST, CIFAR-10) as uint8 level tensors."""

from gentools.data.images import (
    DATASETS,
    DataError,
    ImageData,
    from_unit,
    load_images,
    to_unit,
)

__all__ = ["DATASETS", "DataError", "ImageData", "from_unit", "load_images", "to_unit"]
