"""Reports: one self-contained HTML file of a run's or a benchmark's results, curves and examples.

`defectscope.report.build.build_report` makes it; `plots` draws the figures.
"""

from defectscope.report.errors import ReportError

__all__ = ["ReportError"]
