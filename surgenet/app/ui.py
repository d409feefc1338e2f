"""The Gradio layout of the demo: a thin ``gr.Blocks`` over the functions of :mod:`.analysis`.

Errors a user can cause (not an image, a huge file, a clip that does not decode) come back as a
message in the page (``gr.Error``), never as a stack trace.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import SurgeNetError
from ..tasks import MULTI_LABEL_TASKS
from .analysis import (DEFAULT_CLIP_FPS, DEFAULT_MAX_UPLOAD_BYTES, analyse_clip, analyse_frame, labels_over_time_figure, legend_html,
                       phase_timeline_figure, scores_html)
from .catalog import ModelCatalog
from .serve import private_folder

NO_MODEL = "(none)"
TITLE = "surgenet: surgical foundation models in the browser"
# Menu titles of the multi-label tasks; a task not named here is shown under its own name.
TASK_TITLES = {"cvs": "CVS model (critical view of safety, per criterion)",
               "tools": "Tools model (instrument presence, per tool)"}


def example_frames() -> list[str]:
    """The real frames bundled with the package (Endoscapes2023, CC BY-NC-SA 4.0), for one-click tries."""
    from ..samples import endoscapes_frames

    return [str(p) for p in endoscapes_frames()]


def _gradio():
    private_folder()  # before Gradio is imported: its upload and cache folders are the app's own
    try:
        import gradio as gr
    except ImportError as exc:
        from ..exceptions import InputError

        raise InputError('the web demo needs Gradio: pip install "surgenet[app]".') from exc
    return gr


def _model_facts(catalog: ModelCatalog, labels: list[str | None]) -> str:
    lines = []
    for label in labels:
        if not label or label == NO_MODEL:
            continue
        choice = catalog.get(label)
        state = "fine-tuned" if choice.trained else "task layers untrained"
        how = f"; {choice.note}" if choice.note else ""  # --backend auto: the backend's figures and why
        lines.append(f"- **{choice.source}** ({choice.task}, {choice.backend}, {state}); weights licence: "
                     f"{choice.licence}{how}")
    return "\n".join(lines)


def build_app(catalog: ModelCatalog, examples: list[str] | None = None,
              max_upload_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES):
    """The demo as a ``gr.Blocks`` (not launched): a frame tab and a clip tab; uploads above
    ``max_upload_bytes`` are refused with a message before they are decoded."""
    gr = _gradio()
    examples = example_frames() if examples is None else examples
    seg_menu = [c.label for c in catalog.choices("segmentation")]
    label_menus = {task: [c.label for c in catalog.choices(task)] + [NO_MODEL] for task in MULTI_LABEL_TASKS}
    phase_menu = [c.label for c in catalog.choices("phase")] + [NO_MODEL]
    # Tools first: what is in view over time is the clip's natural multi-label question.
    clip_label_menu = [c.label for task in reversed(MULTI_LABEL_TASKS) for c in catalog.choices(task)] + [NO_MODEL]
    workdir = private_folder() / "clips"  # the clips the app writes, in its private folder; gone when it exits

    def on_frame(image: Any, seg_label: str, alpha: float, *label_choices: str):
        chosen = [None if label == NO_MODEL else label for label in label_choices]
        try:
            result = analyse_frame(catalog, image, seg_label, chosen, alpha, max_bytes=max_upload_bytes)
        except SurgeNetError as exc:
            raise gr.Error(str(exc)) from None
        timing = ", ".join(f"{catalog.get(label).task} {1000 * s:.0f} ms" for label, s in result.seconds.items())
        info = [f"**Time per prediction** ({catalog.device}): {timing}", _model_facts(catalog, [seg_label, *chosen])]
        info += [f"> {note}" for note in result.notes]
        tables = [scores_html(result.scores[task]) if task in result.scores else "" for task in MULTI_LABEL_TASKS]
        return (result.overlay, legend_html(result.legend), *tables, "\n\n".join(info))

    def on_clip(video: Any, phase_label: str, seg_label: str, label_choice: str, fps: float):
        chosen = [None if label == NO_MODEL else label for label in (phase_label, seg_label, label_choice)]
        try:
            clip = analyse_clip(catalog, video, workdir, chosen[0], chosen[1], fps=fps, multi_label=chosen[2],
                                max_bytes=max_upload_bytes)
        except SurgeNetError as exc:
            raise gr.Error(str(exc)) from None
        figure = phase_timeline_figure(clip) if clip.phase_names else None
        labels_figure = labels_over_time_figure(clip) if clip.label_names else None
        timing = ", ".join(f"{catalog.get(label).task} {s:.1f} s for {len(clip.times)} frames"
                           for label, s in clip.seconds.items())
        info = [f"**Time** ({catalog.device}, decoding included): {timing}", _model_facts(catalog, chosen)]
        info += [f"> {note}" for note in clip.notes]
        return (str(clip.video) if clip.video else None), figure, labels_figure, "\n\n".join(info)

    with gr.Blocks(title="surgenet") as demo:
        gr.Markdown(f"# {TITLE}\nUpload a laparoscopic frame or a short clip. Predictions are for research "
                    "only, never for clinical decisions.")
        with gr.Tab("Frame"):
            with gr.Row():
                with gr.Column():
                    frame_in = gr.Image(type="filepath", label="Frame (PNG or JPEG)", sources=["upload", "clipboard"],
                                        elem_id="frame-input")
                    seg_choice = gr.Dropdown(seg_menu, value=seg_menu[0] if seg_menu else None,
                                             label="Segmentation model", elem_id="segmentation-model")
                    label_choices = [gr.Dropdown(menu, value=menu[0], label=TASK_TITLES.get(task, f"{task} model"),
                                                 elem_id=f"{task}-model") for task, menu in label_menus.items()]
                    alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                    frame_button = gr.Button("Segment", variant="primary", elem_id="segment-button")
                    if examples:
                        gr.Examples(examples=examples, inputs=frame_in, label="Real frames (Endoscapes2023)")
                with gr.Column():
                    overlay_out = gr.Image(type="numpy", format="png", label="Segmentation", elem_id="overlay",
                                           interactive=False)
                    legend_out = gr.HTML(elem_id="legend")
                    label_outs = [gr.HTML(elem_id=task) for task in MULTI_LABEL_TASKS]
                    frame_info = gr.Markdown(elem_id="frame-info")
            frame_button.click(on_frame, [frame_in, seg_choice, alpha, *label_choices],
                               [overlay_out, legend_out, *label_outs, frame_info])
        with gr.Tab("Clip"):
            with gr.Row():
                with gr.Column():
                    clip_in = gr.Video(label="Short clip (the first minute is analysed)", sources=["upload"],
                                       elem_id="clip-input")
                    phase_choice = gr.Dropdown(phase_menu, value=phase_menu[0], label="Phase model")
                    seg_clip_choice = gr.Dropdown(seg_menu + [NO_MODEL], value=seg_menu[0] if seg_menu else NO_MODEL,
                                                  label="Segmentation model (overlaid video)")
                    clip_label_choice = gr.Dropdown(clip_label_menu, value=clip_label_menu[0],
                                                    label="Tools or CVS model (probabilities per frame over time)",
                                                    elem_id="clip-labels-model")
                    fps = gr.Slider(0.5, 10.0, value=DEFAULT_CLIP_FPS, step=0.5, label="Frames analysed per second")
                    clip_button = gr.Button("Analyse clip", variant="primary", elem_id="clip-button")
                with gr.Column():
                    clip_out = gr.Video(label="Overlaid clip", elem_id="clip-overlay", interactive=False)
                    timeline_out = gr.Plot(label="Phase timeline", elem_id="timeline")
                    labels_out = gr.Plot(label="Tools / CVS over time", elem_id="labels-timeline")
                    clip_info = gr.Markdown(elem_id="clip-info")
            clip_button.click(on_clip, [clip_in, phase_choice, seg_clip_choice, clip_label_choice, fps],
                              [clip_out, timeline_out, labels_out, clip_info])
    return demo

