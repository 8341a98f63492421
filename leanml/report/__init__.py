"""HTML reports with inline SVG charts."""

from leanml.report.html import Report
from leanml.report.svg import Guide, line_chart_svg, memory_timeline_svg, scatter_chart_svg

__all__ = ["Guide", "Report", "line_chart_svg", "memory_timeline_svg", "scatter_chart_svg"]
