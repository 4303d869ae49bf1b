"""Rigfit: plan, split and run local LLMs across several GPUs."""

__version__ = "0.1.0"
