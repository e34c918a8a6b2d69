"""Exports of a trained run: ONNX (onnx.py)."""
