"""Datasets: Fashion-MNIST (IDX) and batch iteration."""

from leanml.data.fashion_mnist import CLASSES, ImageSet, data_root, load_split
from leanml.data.loader import batches, normalize

__all__ = ["CLASSES", "ImageSet", "batches", "data_root", "load_split", "normalize"]
