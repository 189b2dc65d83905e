"""The NIR conformance checker: other frameworks' NIR import and export measured against NIR's ODEs.

evsnn writes a suite of small reference graphs (:func:`reference_suite`),
each framework reads them with its own NIR import and runs them on the
identical input, and its output is compared with evsnn's event engine
(exact integration of the ODE over each step) and Brian2; in the other
direction, modules the framework builds and exports are read by evsnn.
Where they diverge, the framework's measured per-step update is put next
to the ODE's (:func:`explain`). ``evsnn conformance --framework NAME`` on
the command line; docs/nir.md, "Conformance with other frameworks".

Frameworks are imported only inside their adapters, so this package
imports with none of them installed.
"""

from .adapter import EXPORT_CASES, Adapter, Effective, Exported
from .checker import FRAMEWORKS, CaseResult, ConformanceReport, adapter, check, format_table
from .compare import Comparison, compare, explain, ode_update
from .suite import Case, reference_suite

__all__ = ["Adapter", "Effective", "Exported", "EXPORT_CASES", "FRAMEWORKS", "CaseResult", "ConformanceReport",
           "adapter", "check", "format_table", "Comparison", "compare", "explain", "ode_update", "Case",
           "reference_suite"]
