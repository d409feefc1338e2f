"""Data for training: frame sources, weighted mixtures, a resumable sampler, labelled sets."""

from .dataset import MultiCropDataset, collate_crops, load_skipping
from .mixture import Mixture
from .sampler import Slot, StepSampler
from .sources import ImageFiles, VideoFrames, frame_folder, frame_list, open_source
from .video import extract_frames, iter_sampled_frames, list_videos

__all__ = [
    "ImageFiles", "Mixture", "MultiCropDataset", "Slot", "StepSampler", "VideoFrames",
    "collate_crops", "extract_frames", "frame_folder", "frame_list", "iter_sampled_frames",
    "list_videos", "load_skipping", "open_source",
]
