"""CholecSeg8k (Hong et al., arXiv:2012.12453): 8,080 Cholec80 frames with 13-class masks.

Layout as released: ``videoNN/videoNN_SSSSS/frame_K_endo.png`` (the frame) beside
``frame_K_endo_watershed_mask.png`` (the labels), found anywhere below PATH.

The watershed masks are colour-coded: each class is a grey level (R = G = B), from the class table
published with the dataset (Kaggle page):

====  =========================  =======
 id   class                      colour
====  =========================  =======
  0   black background           #505050
  1   abdominal wall             #111111
  2   liver                      #212121
  3   gastrointestinal tract     #131313
  4   fat                        #121212
  5   grasper                    #313131
  6   connective tissue          #232323
  7   blood                      #242424
  8   cystic duct                #252525
  9   L-hook electrocautery      #323232
 10   gallbladder                #222222
 11   hepatic vein               #333333
 12   liver ligament             #050505
====  =========================  =======

White (#FFFFFF, the one-pixel outline the masks carry) and black (#000000, pixels the annotation
missed) are unlabelled: 255 (ignore) without a warning. Any other colour, or a pixel whose
channels differ, is an unknown id: 255 with one warning per dataset naming the files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...exceptions import InputError
from ...io.masks import read_label_image
from .base import IGNORE_INDEX, RawDataset, SegmentationDataset, check_task

NAME = "cholecseg8k"
DESCRIPTION = "CholecSeg8k: videoNN/*/frame_K_endo.png + frame_K_endo_watershed_mask.png (13 classes); segmentation"
TASKS = ("segmentation",)
CLASSES = [("black background", 0x50), ("abdominal wall", 0x11), ("liver", 0x21), ("gastrointestinal tract", 0x13),
           ("fat", 0x12), ("grasper", 0x31), ("connective tissue", 0x23), ("blood", 0x24), ("cystic duct", 0x25),
           ("L-hook electrocautery", 0x32), ("gallbladder", 0x22), ("hepatic vein", 0x33), ("liver ligament", 0x05)]
CLASS_NAMES = [name for name, _ in CLASSES]
UNLABELLED = (0x00, 0xFF)
_SUFFIX = "_endo_watershed_mask.png"
_NOT_GREY = 254  # decoded value of a pixel whose channels differ: not a class, not unlabelled


def _lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for class_id, (_, grey) in enumerate(CLASSES):
        lut[grey] = class_id
    return lut


def decode_watershed(path: Path) -> np.ndarray:
    """A watershed mask as its grey level per pixel (uint8 ``(H, W)``); pixels whose R, G, B differ
    become 254, which no class uses, so that they are reported as unknown."""
    rgb, _ = read_label_image(path, mode="RGB")
    grey = rgb[..., 0].copy()
    grey[(rgb[..., 1] != grey) | (rgb[..., 2] != grey)] = _NOT_GREY
    return grey


def _pairs(path: Path) -> list[tuple[Path, Path]]:
    def order(mask: Path) -> tuple:
        number = re.search(r"frame_(\d+)_endo", mask.name)
        return (str(mask.parent), int(number.group(1)) if number else -1, mask.name)

    masks = sorted(path.rglob(f"*{_SUFFIX}"), key=order) if path.is_dir() else []
    pairs = []
    for mask in masks:
        image = mask.with_name(mask.name[: -len(_SUFFIX)] + "_endo.png")
        if not image.is_file():
            raise InputError(f"mask {mask} has no frame {image}.")
        pairs.append((image, mask))
    return pairs


def detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    return next(path.glob(f"*/*{_SUFFIX}"), None) is not None or next(path.glob(f"*/*/*{_SUFFIX}"), None) is not None \
        or next(path.glob(f"*{_SUFFIX}"), None) is not None


def open_dataset(path: Path, task: str) -> RawDataset:
    check_task(NAME, task, TASKS)
    pairs = _pairs(path)
    if not pairs:
        raise InputError(f"{path} holds no *{_SUFFIX} masks (CholecSeg8k).")
    ds = SegmentationDataset(CLASS_NAMES, [i for i, _ in pairs], [m for _, m in pairs], decode=decode_watershed,
                             known_values=UNLABELLED, lut=_lut(), source=str(path))
    ds.format = NAME
    return ds
