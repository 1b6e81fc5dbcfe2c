"""Explanation: attributions through Captum with completeness, faithfulness, a sanity check and a global view."""
from .config import ExplainConfig
from .explainer import explain
from .report import ExplainReport

__all__ = ["ExplainConfig", "ExplainReport", "explain"]
