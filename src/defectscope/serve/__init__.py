"""`defectscope serve`: an HTTP service and a web page over one `Detector`.

Only this package imports FastAPI, uvicorn and python-multipart (the `serve` extra), so the
library itself imports without them. Entry point: `defectscope.serve.app.create_app`.
"""
