"""The zoo: what a released model is and how its weights become a strictly loaded network.

* :mod:`~surgenet.zoo.registry` - one record per released checkpoint, the single source of truth;
* :mod:`~surgenet.zoo.backbones` - the timm architectures, configured as the authors trained them;
* :mod:`~surgenet.zoo.hub` - fetching the files through huggingface_hub (cache, revision, offline);
* :mod:`~surgenet.zoo.checkpoint` - reading weights safely, unwrapping every released layout;
* :mod:`~surgenet.zoo.converters` - foreign key layouts mapped onto timm's;
* :mod:`~surgenet.zoo.factory` - ``load_backbone``, the one call that ties them together;
* :mod:`~surgenet.zoo.cards` and :mod:`~surgenet.zoo.card_files` - model cards from the registry.

Importing this package loads nothing heavy; torch and timm come with the modules that need them.
"""
