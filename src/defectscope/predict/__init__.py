"""`defectscope predict`'s job: score image files with a detector, write maps and one score table.

`job.run_predict` does the work the verb asks for; `output` owns the output folder (names, the
refusal of a non-empty one, merging the ranks' rows, scores.json), `shard` the split over
torchrun's processes. Torch-free: with the onnxruntime backend nothing here imports torch; the
torch backend and torchrun's process group import it when they are used.
"""
