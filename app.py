"""Hugging Face Space entry point: the surgenet web demo.

A Space runs ``python app.py``; its requirements are ``surgenet[app]``. Choose the models with
``SURGENET_APP_MODELS`` (comma-separated zoo names or folders; default ``surgenetxl-caformer``)
and ``SURGENET_APP_PRETRAINED=0`` for random backbones. Locally, ``surgenet app`` does the same.
Both serve through :func:`surgenet.app.launch`: the app's own files only, from a private folder
removed at exit.
"""

import os

from surgenet.app import create_demo, launch

demo = create_demo(os.environ.get("SURGENET_APP_MODELS", "surgenetxl-caformer").split(","),
                   pretrained=os.environ.get("SURGENET_APP_PRETRAINED", "1") != "0")

if __name__ == "__main__":
    launch(demo)  # host and port: Gradio's (GRADIO_SERVER_NAME / _PORT, as a Space sets them)
