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
from gentools.data.audio import AudioData, load_audio, mu_law_decode, mu_law_encode  # noqa: F401
from gentools.data.text import TextData, load_text, load_tokenizer, train_tokenizer  # noqa: F401
