"""Reports: what a verb found, as JSON and as a section of one self-contained HTML page."""
from .base import Report, figure_html, page, table_html, write_page

__all__ = ["Report", "figure_html", "page", "table_html", "write_page"]
