"""The window's side of the Hugging Face hub: "Get this model", the downloads list, and their hooks."""
