"""Archive-scale jobs (``surgenet batch``, ``surgenet embed``): one job description, two engines.

The local engine runs in this process and needs only the ``video`` extra; ``engine="ray"`` runs
the same per-batch function on Ray Data (extra ``ray``). See :func:`run_job`.

Example:
    >>> from surgenet.batch import BatchJob, ModelSpec, run_job
    >>> job = BatchJob("archive/", ModelSpec("my-phase-model", mode="phase"), out="out/", fps=1)
    >>> report = run_job(job)                  # OUT/predictions.parquet, OUT/<video>/predictions.csv
    >>> report = run_job(job, engine="ray", workers=4)
"""

from .inputs import ArchiveInput, discover_inputs
from .job import BatchJob, JobReport, run_job
from .spec import ModelSpec

__all__ = ["ArchiveInput", "BatchJob", "JobReport", "ModelSpec", "discover_inputs", "run_job"]
