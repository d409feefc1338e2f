"""Class lists of the public surgical label sets, in their official id order (one source of truth).

Task models, dataset readers and the web demo take their names from here, so a mask value, a
CSV column and a legend entry always agree.
"""

from __future__ import annotations

# Endoscapes2023 semantic segmentation (Murali et al., arXiv:2312.12429): mask value = index.
ENDOSCAPES_CLASSES = ("background", "cystic plate", "hepatocystic triangle", "cystic artery", "cystic duct",
                      "gallbladder", "tool")

# Cholec80 / CholecT50 phases (``categories.phase`` of the CholecT50 labels): phase id = index.
CHOLEC80_PHASES = ("preparation", "calot triangle dissection", "clipping and cutting", "gallbladder dissection",
                   "gallbladder packaging", "cleaning and coagulation", "gallbladder extraction")
