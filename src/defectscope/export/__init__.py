"""Exported models: a checkpoint's whole scoring path as one ONNX graph, and a runtime without torch.

`defectscope.export.onnx_graph` (torch, onnx, onnxscript) writes the graph; `defectscope.export.runtime`
(numpy and onnxruntime only) scores images with it. This package imports neither on its own, so
the runtime side stays free of torch.
"""
