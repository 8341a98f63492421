"""Profiling: params, MACs, model size at any bit width, peak activation memory, and the one timing module."""

from leanml.profile.graph import OpNode, trace_ops
from leanml.profile.timing import (
    LatencyStats,
    Throughput,
    measure_latency,
    measure_throughput,
    model_latency,
    time_calls,
)
from leanml.profile.machine import cpu_model, machine_summary
from leanml.profile.macs import op_macs, register_macs
from leanml.profile.memory import Buffer, MemoryPlan, activation_buffers
from leanml.profile.summary import LayerProfile, ModelProfile, profile_model

__all__ = [
    "Buffer",
    "LatencyStats",
    "LayerProfile",
    "MemoryPlan",
    "ModelProfile",
    "OpNode",
    "Throughput",
    "activation_buffers",
    "cpu_model",
    "machine_summary",
    "measure_latency",
    "measure_throughput",
    "model_latency",
    "op_macs",
    "profile_model",
    "register_macs",
    "time_calls",
    "trace_ops",
]  # fmt: skip
