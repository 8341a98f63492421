"""Profiling: params, MACs, model size at any bit width, peak activation memory, and the one timing module."""

from leanml.profile.graph import OpNode, trace_ops
from leanml.profile.machine import cpu_model, machine_summary
from leanml.profile.macs import count_macs
from leanml.profile.memory import Buffer, MemoryPlan, Reuse, activation_buffers, reuses_input
from leanml.profile.summary import LayerProfile, ModelProfile, profile_model
from leanml.profile.timing import (
    LatencyStats,
    Throughput,
    measure_latency,
    measure_throughput,
    model_latency,
    time_calls,
)
from leanml.profile.traced_ops import OpShape, op_macs, op_shape, register_op_kind

__all__ = [
    "Buffer",
    "LatencyStats",
    "LayerProfile",
    "MemoryPlan",
    "ModelProfile",
    "OpNode",
    "OpShape",
    "Reuse",
    "Throughput",
    "activation_buffers",
    "count_macs",
    "cpu_model",
    "machine_summary",
    "measure_latency",
    "measure_throughput",
    "model_latency",
    "op_macs",
    "op_shape",
    "profile_model",
    "register_op_kind",
    "reuses_input",
    "time_calls",
    "trace_ops",
]  # fmt: skip
