"""The local OpenAI-compatible server: the model the worker holds, answering chat apps over HTTP."""
