"""Files in and out: frames (image files, folders of images, videos streamed with PyAV), masks, user text,
atomic writes, safe output paths and text tables."""

from .images import IMAGE_EXTENSIONS, ImageLike, as_rgb_array, list_images, read_image
from .video import VIDEO_EXTENSIONS, Frame, PartialVideoError, frame_count, is_video, iter_video

__all__ = ["IMAGE_EXTENSIONS", "ImageLike", "PartialVideoError", "VIDEO_EXTENSIONS", "Frame", "as_rgb_array", "frame_count",
           "is_video", "iter_video", "list_images", "read_image"]
