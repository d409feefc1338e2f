"""The Gradio layout of the demo: a thin ``gr.Blocks`` over the functions of :mod:`.analysis`.

Errors a user can cause (not an image, a huge file, a clip that does not decode) come back as a
message in the page (``gr.Error``), never as a stack trace.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..exceptions import SurgeNetError
from .analysis import DEFAULT_CLIP_FPS, analyse_clip, analyse_frame, legend_html, phase_timeline_figure
from .catalog import ModelCatalog

NO_MODEL = "(none)"
TITLE = "surgenet: surgical foundation models in the browser"


def example_frames() -> list[str]:
    """The real frames bundled with the package (Endoscapes2023, CC BY-NC-SA 4.0), for one-click tries."""
    from ..samples import endoscapes_frames

    return [str(p) for p in endoscapes_frames()]


def _gradio():
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
        lines.append(f"- **{choice.source}** ({choice.task}, {choice.backend}, {state}); weights licence: "
                     f"{choice.licence}")
    return "\n".join(lines)


def build_app(catalog: ModelCatalog, examples: list[str] | None = None):
    """The demo as a ``gr.Blocks`` (not launched): a frame tab and a clip tab."""
    gr = _gradio()
    examples = example_frames() if examples is None else examples
    seg_menu = [c.label for c in catalog.choices("segmentation")]
    cvs_menu = [c.label for c in catalog.choices("cvs")] + [NO_MODEL]
    phase_menu = [c.label for c in catalog.choices("phase")] + [NO_MODEL]
    workdir = Path(tempfile.mkdtemp(prefix="surgenet-app-"))

    def on_frame(image: Any, seg_label: str, cvs_label: str, alpha: float):
        try:
            result = analyse_frame(catalog, image, seg_label, None if cvs_label == NO_MODEL else cvs_label, alpha)
        except SurgeNetError as exc:
            raise gr.Error(str(exc)) from None
        timing = ", ".join(f"{catalog.get(label).task} {1000 * s:.0f} ms" for label, s in result.seconds.items())
        info = [f"**Time per prediction** ({catalog.device}): {timing}", _model_facts(catalog, [seg_label, cvs_label])]
        info += [f"> {note}" for note in result.notes]
        cvs = result.cvs if result.cvs is not None else {}
        return result.overlay, legend_html(result.legend), cvs, "\n\n".join(info)

    def on_clip(video: Any, phase_label: str, seg_label: str, fps: float):
        try:
            clip = analyse_clip(catalog, video, workdir, None if phase_label == NO_MODEL else phase_label,
                                None if seg_label == NO_MODEL else seg_label, fps=fps)
        except SurgeNetError as exc:
            raise gr.Error(str(exc)) from None
        figure = phase_timeline_figure(clip) if clip.phase_names else None
        timing = ", ".join(f"{catalog.get(label).task} {s:.1f} s for {len(clip.times)} frames"
                           for label, s in clip.seconds.items())
        info = [f"**Time** ({catalog.device}, decoding included): {timing}",
                _model_facts(catalog, [phase_label, seg_label])]
        info += [f"> {note}" for note in clip.notes]
        return (str(clip.video) if clip.video else None), figure, "\n\n".join(info)

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
                    cvs_choice = gr.Dropdown(cvs_menu, value=cvs_menu[0], label="CVS model", elem_id="cvs-model")
                    alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                    frame_button = gr.Button("Segment", variant="primary", elem_id="segment-button")
                    if examples:
                        gr.Examples(examples=examples, inputs=frame_in, label="Real frames (Endoscapes2023)")
                with gr.Column():
                    overlay_out = gr.Image(type="numpy", format="png", label="Segmentation", elem_id="overlay",
                                           interactive=False)
                    legend_out = gr.HTML(elem_id="legend")
                    cvs_out = gr.Label(label="Critical view of safety (probability per criterion)",
                                       num_top_classes=3, show_heading=False, elem_id="cvs")
                    frame_info = gr.Markdown(elem_id="frame-info")
            frame_button.click(on_frame, [frame_in, seg_choice, cvs_choice, alpha],
                               [overlay_out, legend_out, cvs_out, frame_info])
        with gr.Tab("Clip"):
            with gr.Row():
                with gr.Column():
                    clip_in = gr.Video(label="Short clip (the first minute is analysed)", sources=["upload"],
                                       elem_id="clip-input")
                    phase_choice = gr.Dropdown(phase_menu, value=phase_menu[0], label="Phase model")
                    seg_clip_choice = gr.Dropdown(seg_menu + [NO_MODEL], value=seg_menu[0] if seg_menu else NO_MODEL,
                                                  label="Segmentation model (overlaid video)")
                    fps = gr.Slider(0.5, 10.0, value=DEFAULT_CLIP_FPS, step=0.5, label="Frames analysed per second")
                    clip_button = gr.Button("Analyse clip", variant="primary", elem_id="clip-button")
                with gr.Column():
                    clip_out = gr.Video(label="Overlaid clip", elem_id="clip-overlay", interactive=False)
                    timeline_out = gr.Plot(label="Phase timeline", elem_id="timeline")
                    clip_info = gr.Markdown(elem_id="clip-info")
            clip_button.click(on_clip, [clip_in, phase_choice, seg_clip_choice, fps], [clip_out, timeline_out, clip_info])
    return demo

