"""link-archiver: keep the references a blog cites, in WARC, and know which ones died."""

__version__ = "0.1.0"
