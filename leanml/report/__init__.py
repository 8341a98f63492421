"""HTML reports with inline SVG charts."""

from leanml.report.html import Report, line_chart_svg

__all__ = ["Report", "line_chart_svg"]
