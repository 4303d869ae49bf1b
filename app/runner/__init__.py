"""The llama.cpp worker process and the client that talks to it. No Qt."""
