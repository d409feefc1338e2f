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

# Endoscapes2023 critical view of safety criteria (Strasberg's three), in column order c1, c2, c3.
CVS_CRITERIA = ("C1 two structures", "C2 hepatocystic triangle cleared", "C3 lower gallbladder off the liver bed")

# CholecT50 instruments (``categories.instrument``) and Cholec80's tool columns, in id order.
CHOLECT50_TOOLS = ("grasper", "bipolar", "hook", "scissors", "clipper", "irrigator")
CHOLEC80_TOOLS = ("Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag")
