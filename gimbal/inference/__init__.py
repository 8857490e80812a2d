"""Inference: a trained model on real bursts, and the bursts a camera would capture.

Modules (import them directly; this package imports nothing eagerly):

- :mod:`gimbal.inference.infer` - ``gimbal infer``: n frames and their exposure times -> the merged image;
- :mod:`gimbal.inference.tiling` - the merge of a large burst in overlapping tiles, with bounded memory;
- :mod:`gimbal.inference.onnx_merge` - the merge as an ONNX graph (``gimbal export --onnx``), run with onnxruntime;
- :mod:`gimbal.inference.simulate` - ``gimbal simulate-burst``: the raw burst of an image or clip;
- :mod:`gimbal.inference.frame_files` - reading and writing burst frames and output images;
- :mod:`gimbal.inference.imageheader` - frame sizes read from the headers, checked against the memory left.
"""
