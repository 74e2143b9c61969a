"""Episodic few-shot data: class-indexed datasets, episode sampling, augmentation, loaders."""

from metajax.data._paths import cache_dir as cache_dir
from metajax.data._paths import data_dir as data_dir
from metajax.data._tfds_omniglot import prepare_tfds_omniglot as prepare_tfds_omniglot
from metajax.data.augment import compose as compose
from metajax.data.augment import random_crop as random_crop
from metajax.data.augment import random_flip as random_flip
from metajax.data.augment import rotations_as_classes as rotations_as_classes
from metajax.data.cifar_fs import load_cifar_fs as load_cifar_fs
from metajax.data.dataset import ClassDataset as ClassDataset
from metajax.data.dataset import from_class_lists as from_class_lists
from metajax.data.dataset import from_labels as from_labels
from metajax.data.download import download_file as download_file
from metajax.data.download import download_omniglot as download_omniglot
from metajax.data.mini_imagenet import load_mini_imagenet as load_mini_imagenet
from metajax.data.omniglot import load_omniglot as load_omniglot
from metajax.data.omniglot import omniglot_characters as omniglot_characters
from metajax.data.sampler import EpisodeSampler as EpisodeSampler
from metajax.data.sampler import episode_sampler as episode_sampler
from metajax.data.sampler import sample_episodes as sample_episodes
from metajax.data.sinusoid import SinusoidParams as SinusoidParams
from metajax.data.sinusoid import sinusoid as sinusoid
from metajax.data.sinusoid import sinusoid_params as sinusoid_params
from metajax.data.sinusoid import sinusoid_tasks as sinusoid_tasks
from metajax.data.tfds_source import from_tfds as from_tfds
from metajax.data.tiny_imagenet import load_tiny_imagenet as load_tiny_imagenet
from metajax.data.tiny_imagenet import tiny_imagenet_classes as tiny_imagenet_classes
