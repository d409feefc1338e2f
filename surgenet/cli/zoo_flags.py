"""The flags a zoo name needs on the command line, checked before anything loads.

A zoo name is a pretrained backbone; a command builds a task model on it, which needs the task
and, where the task has no fixed classes, their number. ``load_model`` says so in the API's words
(``task=``, ``num_classes``); the commands say it in theirs, once, here.
"""

from __future__ import annotations

from ..exceptions import InputError
from ..tasks import TASKS


def check_zoo_flags(model: str, task: str | None, num_classes: int | None) -> None:
    """Raise one line naming the missing flag when ``model`` is a zoo name without ``--task`` or
    (for tasks without fixed classes) ``--num-classes``; other models (folders, Hub ids, exports)
    carry their task and classes and pass."""
    from ..backends import is_export_folder
    from ..models.loading import DEFAULT_NUM_CLASSES, model_source

    if is_export_folder(model) or model_source(model) != "zoo":
        return
    if task is None:
        raise InputError(f"{model} is a zoo backbone: pass --task ({', '.join(TASKS)}) and --num-classes, or a "
                         "fine-tuned model folder (surgenet-train finetune's OUT/best).")
    if num_classes is None and DEFAULT_NUM_CLASSES.get(task) is None:
        raise InputError(f"{model} with --task {task} needs --num-classes N (the classes to segment, phases to "
                         "recognise or tools to detect), or a fine-tuned model folder.")


__all__ = ["check_zoo_flags"]
