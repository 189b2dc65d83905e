"""Cross-validation of simulators: :func:`validate` compares two spike for spike, :func:`convergence`
a timestep engine against Brian2 at finer ``dt`` (``docs/validation.md``).

``runners`` runs simulators (engine names or callables) and compares their runs,
``report`` holds what is returned, ``convergence`` the dt study.
"""

from .convergence import convergence
from .report import Comparison, ConvergenceReport, PopulationAgreement, SopAgreement, ValidationReport
from .runners import Simulator, compare, next_step_model, validate

__all__ = ["validate", "convergence", "compare", "next_step_model", "ValidationReport", "Comparison",
           "PopulationAgreement", "SopAgreement", "ConvergenceReport", "Simulator"]
